"""``python -m scorer``: run one scorer process (shard from ``SCORER_SHARD``, default 0/1)."""

from __future__ import annotations

import asyncio
import logging
import sys

from core.errors import PipelineError
from core.runtime import tune_gc
from core.settings import load_settings
from scorer.settings import ScorerSettings

log = logging.getLogger("scorer")


def _pipeline_errors(exc: BaseException) -> list[PipelineError]:
    """The domain errors inside ``exc`` (a TaskGroup wraps what its tasks raise in a group)."""
    if isinstance(exc, PipelineError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        return [e for sub in exc.exceptions for e in _pipeline_errors(sub)]
    return []


def run(settings: ScorerSettings) -> int:
    """Run until SIGTERM; 0 after a clean drain, 1 when the scorer cannot start or fails."""
    from scorer.worker import ScorerWorker

    tune_gc()

    async def serve() -> int:
        # Built inside the loop: the MQTT client binds to the running loop.
        return await ScorerWorker(settings).run()

    try:
        return asyncio.run(serve())
    except (PipelineError, BaseExceptionGroup) as exc:
        errors = _pipeline_errors(exc)
        if not errors:
            raise
        for err in errors:
            # Models, database or broker: say which in one line and exit non-zero.
            log.error("scorer cannot run: %s: %s", type(err).__name__, err)
            print(f"scorer: {type(err).__name__}: {err}", file=sys.stderr)  # noqa: T201
        return 1


def main() -> int:
    # Exits 2 naming each invalid variable and why (SCORING's message names the key).
    return run(load_settings(ScorerSettings, "scorer"))


if __name__ == "__main__":
    sys.exit(main())
