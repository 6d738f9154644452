"""``python -m ingestor``: run one ingestor from environment settings until SIGTERM."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from core.logging import configure_logging
from ingestor.settings import IngestorSettings
from ingestor.worker import run_forever


def main() -> int:
    try:
        settings = IngestorSettings()
    except ValidationError as exc:
        names = ", ".join(".".join(map(str, e["loc"])).upper() or "settings" for e in exc.errors())
        sys.stderr.write(f"ingestor: invalid settings: {names}\n{exc}\n")
        return 2
    configure_logging(settings.log_level, settings.log_format, "ingestor")
    return run_forever(settings)


if __name__ == "__main__":
    sys.exit(main())
