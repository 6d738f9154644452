"""``python -m ingestor``: run one ingestor from environment settings until SIGTERM."""

from __future__ import annotations

import sys

from core.settings import load_settings
from ingestor.settings import IngestorSettings
from ingestor.worker import run_forever


def main() -> int:
    # Exits 2 naming each invalid variable and why.
    return run_forever(load_settings(IngestorSettings, "ingestor"))


if __name__ == "__main__":
    sys.exit(main())
