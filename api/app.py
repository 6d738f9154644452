"""The application factory: ``create_app(settings) -> FastAPI``.

The lifespan opens the database pool, starts the MQTT publisher and loads the models, then runs
the background tasks (publisher reconnect loop, key-usage flusher, model-state refresher,
idempotency purge) until shutdown. Nothing connects at import time, and nothing here fails
startup because a dependency is down: the API starts, says what is missing on
``/health/ready``, and answers 503 on the endpoints that need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import queries
from api.errors import install_error_handlers
from api.metrics import ApiMetrics
from api.middleware import RequestEnvelope
from api.models_cache import ModelsCache
from api.publisher import Publisher
from api.routes import ROUTERS
from api.security import Authenticator
from api.settings import ApiSettings
from api.state import AppState
from core.db import async_pool

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
_PURGE_INTERVAL_S = 300.0

DESCRIPTION = """\
Forecasts, on-demand anomaly checks, reports and HTTP ingest for sensorpipe.

Authenticate with an `X-API-Key` header (`sensorpipe keys create`). Every error is JSON:
`{"error": {"code", "message", "request_id", ...}}`; every response carries `X-Request-ID`.
"""


async def _every(
    interval_s: float, stop: asyncio.Event, job: Callable[[], Awaitable[None]], what: str
) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        try:
            await job()
        except Exception:  # one failed run is retried at the next interval
            log.warning("%s failed", what, exc_info=True)


def _lifespan(
    settings: ApiSettings, metrics: ApiMetrics
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[dict[str, Any]]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        pool = async_pool(
            settings.dsn,
            min_size=settings.api_db_pool_min,
            max_size=settings.api_db_pool_max,
            max_waiting=settings.api_db_pool_max_waiting,
            name="sensorpipe-api",
        )
        pool.timeout = settings.api_db_timeout_s
        await pool.open(wait=False)
        stop = asyncio.Event()
        # A publisher needs no persistent session, and two API processes (uvicorn workers,
        # replicas) sharing one client id would disconnect each other: make it unique.
        client_id = f"{settings.api_mqtt_client_id}-{os.getpid()}-{secrets.token_hex(3)}"
        publisher = Publisher(
            settings, client_id=client_id, timeout_s=settings.api_publish_timeout_s
        )
        auth = Authenticator(
            pool,
            metrics,
            cache_s=settings.api_key_cache_s,
            touch_interval_s=settings.api_key_touch_interval_s,
        )
        models = ModelsCache(settings, pool, metrics)
        state = AppState(
            settings=settings,
            pool=pool,
            publisher=publisher,
            auth=auth,
            models=models,
            metrics=metrics,
        )

        async def purge() -> None:
            async with pool.connection() as conn:
                await conn.execute(queries.PURGE_IDEMPOTENCY_KEYS)

        tasks = [
            asyncio.create_task(publisher.run(stop), name="publisher"),
            asyncio.create_task(auth.run_toucher(stop), name="key-usage"),
            asyncio.create_task(models.run(stop), name="model-state"),
            asyncio.create_task(
                _every(_PURGE_INTERVAL_S, stop, purge, "idempotency purge"),
                name="idempotency-purge",
            ),
        ]
        await _startup_grace(publisher, models, settings.api_startup_grace_s)
        try:
            yield {"api": state}
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await auth.flush_touches()
            models.close()
            await pool.close()

    return lifespan


async def _startup_grace(publisher: Publisher, models: ModelsCache, grace_s: float) -> None:
    """Let the first connection and model load finish so the first requests find them ready."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace_s):
            await asyncio.gather(publisher.wait_connected(), models.wait_loaded())


def _include_dashboard(app: FastAPI) -> None:
    # The dashboard (api/dashboard.py, built separately) is optional: the API works without it.
    if importlib.util.find_spec("api.dashboard") is None:
        return
    dashboard = importlib.import_module("api.dashboard")
    app.include_router(dashboard.router)


def create_app(settings: ApiSettings) -> FastAPI:
    metrics = ApiMetrics()
    app = FastAPI(
        title="sensorpipe API",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=_lifespan(settings, metrics),
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.metrics = metrics
    app.state.settings = settings
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    _include_dashboard(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    # Outermost: request id, body limit, metrics and the last-resort 500 wrap everything.
    app.add_middleware(RequestEnvelope, max_body_bytes=settings.api_max_body_bytes, metrics=metrics)
    return app
