"""Building settings for a command, with a readable message instead of a traceback."""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import ValidationError

from core.logging import configure_logging
from core.settings import CommonSettings

S = TypeVar("S", bound=CommonSettings)


def load_settings(cls: type[S], component: str | None = None, **overrides: object) -> S:
    """Settings from the environment (plus CLI overrides); exit 2 with the missing names."""
    try:
        settings = cls(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        print(
            "sensorpipe: invalid settings (environment variables):\n" + "\n".join(lines),
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format, component)
    return settings
