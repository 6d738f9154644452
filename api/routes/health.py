"""Liveness, database health, readiness (database, broker, models) and Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import queries
from api.deps import StateDep
from api.errors import ApiError
from api.schemas import DbHealthOut, HealthOut, ReadyOut, error_responses
from api.state import AppState

router = APIRouter(tags=["health"])

_DB_CHECK_TIMEOUT_S = 2.0


@router.get("/health", response_model=HealthOut)
async def health() -> HealthOut:
    """Liveness: the process answers. Touches nothing else."""
    return HealthOut(status="ok")


async def _db_check(state: AppState) -> tuple[bool, str, float]:
    started = time.perf_counter()
    try:
        async with state.pool.connection(timeout=_DB_CHECK_TIMEOUT_S) as conn:
            await conn.execute(queries.PING)
    except Exception as exc:  # any failure means "not healthy"; the reason is for operators
        return False, f"database unavailable: {type(exc).__name__}", 0.0
    return True, "ok", (time.perf_counter() - started) * 1000.0


@router.get("/health/db", response_model=DbHealthOut, responses=error_responses(503))
async def health_db(state: StateDep) -> DbHealthOut:
    ok, reason, latency_ms = await _db_check(state)
    if not ok:
        raise ApiError(503, "database_unavailable", reason)
    return DbHealthOut(status="ok", latency_ms=round(latency_ms, 3))


@router.get("/health/ready", response_model=ReadyOut, responses=error_responses(503))
async def health_ready(state: StateDep) -> ReadyOut:
    """Ready when the database answers, the broker is connected and the models are loaded;
    otherwise 503 with the reason of each failing check."""
    db_ok, db_reason, _ = await _db_check(state)
    broker_ok, broker_reason = state.publisher.status
    models_ok, models_reason = state.models.status
    checks = {
        "database": db_reason,
        "broker": broker_reason if not broker_ok else "ok",
        "models": models_reason if not models_ok else "ok",
    }
    if not (db_ok and broker_ok and models_ok):
        failing = ", ".join(k for k, v in checks.items() if v != "ok")
        raise ApiError(503, "not_ready", f"not ready: {failing}", checks=checks)
    return ReadyOut(status="ready", checks=checks)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
)
async def metrics(state: StateDep) -> Response:
    state.metrics.cached_sensors.set(state.models.cached_sensors)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
