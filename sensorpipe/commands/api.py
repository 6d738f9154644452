"""``sensorpipe api``: serve the HTTP API (FastAPI under uvicorn)."""

from __future__ import annotations

import argparse
from typing import Any

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
        uvicorn.run(create_app(settings), **common)
    return 0


def app_from_env() -> object:
    """uvicorn factory for multi-worker runs: settings from the environment in each worker."""
    from api.app import create_app
    from api.settings import ApiSettings
    from sensorpipe.config import load_settings

    return create_app(load_settings(ApiSettings, "api"))
