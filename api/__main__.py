"""``python -m api``: serve the HTTP API (settings from the environment; ``sensorpipe api`` is the
same with command-line overrides and friendlier settings errors)."""

from __future__ import annotations

import sys


def main() -> int:
    from api.server import app_from_env, serve

    app = app_from_env()
    settings = app.state.settings
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
