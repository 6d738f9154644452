"""Serving the app with uvicorn (``python -m api`` and ``sensorpipe api`` both come here).

One process: a uvicorn ``Server`` that drains on SIGTERM/SIGINT and returns, so the command exits
0 after a clean shutdown (stock uvicorn re-raises the signal, ending the process with 143).
Several workers: uvicorn's supervisor, each worker building its app through ``app_from_env``.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.settings import ApiSettings
from core.logging import configure_logging


class GracefulServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self.handle_exit) for s in handled}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _uvicorn_options(settings: ApiSettings) -> dict[str, Any]:
    return {
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


def serve(settings: ApiSettings) -> int:
    """Serve until SIGTERM/SIGINT; returns 0 after a clean drain."""
    if settings.api_workers > 1:
        # Each worker process builds its own app (and settings) through the factory below.
        uvicorn.run(
            "api.server:app_from_env",
            factory=True,
            workers=settings.api_workers,
            **_uvicorn_options(settings),
        )
    else:
        GracefulServer(uvicorn.Config(create_app(settings), **_uvicorn_options(settings))).run()
    return 0


def app_from_env() -> FastAPI:
    """uvicorn factory for multi-worker runs: settings from the environment in each worker."""
    settings = ApiSettings()  # required fields (DATABASE_URL, MQTT_URL) come from the env
    configure_logging(settings.log_level, settings.log_format, "api")
    return create_app(settings)
