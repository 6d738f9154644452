"""``python -m api``: serve the HTTP API with uvicorn (settings from the environment)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from sensorpipe.__main__ import main as cli

    return cli(["api", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
