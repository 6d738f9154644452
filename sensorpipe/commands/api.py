"""``sensorpipe api``: serve the HTTP API (FastAPI under uvicorn)."""

from __future__ import annotations

import argparse
import contextlib
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.settings import ApiSettings

HELP = "serve the HTTP API and dashboard (FastAPI/uvicorn); OpenAPI at /docs"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="bind address (default: API_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: API_PORT or 8000)")
    p.add_argument(
        "--workers",
        type=int,
        help="worker processes (default: API_WORKERS or 1); rate limits are per process",
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.settings import ApiSettings
    from sensorpipe.config import load_settings

    settings = load_settings(
        ApiSettings, "api", api_host=args.host, api_port=args.port, api_workers=args.workers
    )
    _tune_interpreter(settings)
    common: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        # Open dashboard streams (/api/v1/stream) never end by themselves: without a deadline
        # SIGTERM would wait for every browser tab to close. Past it they are cancelled (the
        # page reconnects to the next server) and the lifespan shutdown runs.
        "timeout_graceful_shutdown": 5,
    }
    if settings.api_workers > 1:
        # Each worker process builds its own app (and settings) through the factory below.
        uvicorn.run(
            "sensorpipe.commands.api:app_from_env",
            factory=True,
            workers=settings.api_workers,
            **common,
        )
    else:
        server_class = _graceful_server_class()
        server_class(uvicorn.Config(create_app(settings), **common)).run()
    return 0


def _graceful_server_class() -> type:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its graceful shutdown, so the process would end with
        status 143; a clean drain is a success, so this one returns and the command exits 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {s: signal.signal(s, self.handle_exit) for s in handled}
            try:
                yield
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)

    return GracefulServer


def _tune_interpreter(settings: ApiSettings) -> None:
    """The event loop and the scorer thread share the GIL. With CPython's default 5 ms switch
    interval a request's coroutine can wait up to 5 ms for the GIL while the scorer thread runs
    numpy on small arrays; a shorter interval bounds that wait (``API_SWITCH_INTERVAL_MS``,
    compared in ``benchmarks/bench_api.py``)."""
    import sys

    sys.setswitchinterval(settings.api_switch_interval_ms / 1000.0)


def app_from_env() -> object:
    """uvicorn factory for multi-worker runs: settings from the environment in each worker."""
    from api.app import create_app
    from api.settings import ApiSettings
    from sensorpipe.config import load_settings

    settings = load_settings(ApiSettings, "api")
    _tune_interpreter(settings)
    return create_app(settings)
