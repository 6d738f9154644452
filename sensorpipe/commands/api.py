"""``sensorpipe api``: serve the HTTP API (FastAPI under uvicorn)."""

from __future__ import annotations

import argparse

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
    from api.server import serve
    from api.settings import ApiSettings
    from core.settings import load_settings

    settings = load_settings(
        ApiSettings, "api", api_host=args.host, api_port=args.port, api_workers=args.workers
    )
    return serve(settings)
