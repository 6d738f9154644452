"""``python -m api``: serve the HTTP API with settings from the environment (``sensorpipe api``
is the same with command-line overrides)."""

from __future__ import annotations

import sys


def main() -> int:
    from api.server import serve
    from api.settings import ApiSettings
    from core.settings import load_settings

    # Exits 2 naming each invalid variable and why, as every entry point does.
    return serve(load_settings(ApiSettings, "api"))


if __name__ == "__main__":
    sys.exit(main())
