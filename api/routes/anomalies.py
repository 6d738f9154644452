"""``GET /api/v1/anomalies``: stored anomaly and deadman incidents, newest first, filterable."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from psycopg.rows import dict_row

from api import queries
from api.deps import ReportsKey, StateDep
from api.errors import ApiError
from api.paging import check_limit, cursor_time, decode_cursor, encode_cursor, time_window
from api.schemas import AUTH_ERRORS, AnomalyOut, AnomalyPage, error_responses
from core.topics import SENSOR_ID_PATTERN

router = APIRouter(prefix="/api/v1", tags=["anomalies"])


@router.get("/anomalies", response_model=AnomalyPage, responses=error_responses(*AUTH_ERRORS, 503))
async def list_anomalies(
    key: ReportsKey,
    state: StateDep,
    sensor_id: Annotated[str | None, Query(pattern=SENSOR_ID_PATTERN)] = None,
    incident_state: Annotated[Literal["open", "resolved"] | None, Query(alias="state")] = None,
    severity: Literal["warning", "critical"] | None = None,
    kind: Literal["anomaly", "deadman"] | None = None,
    start: Annotated[datetime | None, Query(alias="from", description="default: to - 7 d")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="default: now")] = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    cursor: str | None = None,
) -> AnomalyPage:
    """Incidents opened in `[from, to)`, newest first; follow `next_cursor` for more."""
    settings = state.settings
    check_limit(limit, settings.api_max_page_size, state.metrics)
    t0, t1 = time_window(
        start,
        end,
        max_days=settings.api_max_bucket_range_days,
        default=timedelta(days=7),
        metrics=state.metrics,
    )
    c_time, c_id = None, None
    if cursor:
        doc = decode_cursor(cursor, "t", "id")
        c_time = cursor_time(doc)
        try:
            c_id = str(uuid.UUID(str(doc["id"])))
        except ValueError as exc:
            raise ApiError(422, "invalid_cursor", "the cursor is not one this API issued") from exc
    params = {
        "start": t0,
        "end": t1,
        "sensor_id": sensor_id,
        "state": incident_state,
        "severity": severity,
        "kind": kind,
        "c_time": c_time,
        "c_id": c_id,
        "limit": limit + 1,
    }
    async with state.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.LIST_ANOMALIES, params)
        rows = await cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return AnomalyPage(
        items=[AnomalyOut(**r) for r in rows],
        next_cursor=(
            encode_cursor(t=last["opened_at"], id=last["event_id"]) if more and last else None
        ),
    )
