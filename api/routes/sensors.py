"""``/api/v1/sensors``: the sensor registry, one sensor, and its readings (raw or bucketed)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query
from psycopg.rows import dict_row

from api import queries
from api.deps import ReportsKey, StateDep
from api.errors import ApiError
from api.paging import (
    BUCKET_SECONDS,
    ONE_MICROSECOND,
    Bucket,
    check_limit,
    cursor_time,
    decode_cursor,
    encode_cursor,
    time_window,
)
from api.schemas import (
    AUTH_ERRORS,
    BucketPoint,
    RawPoint,
    ReadingsPage,
    SensorDetailOut,
    SensorOut,
    SensorPage,
    error_responses,
)
from core.topics import SENSOR_ID_PATTERN

router = APIRouter(prefix="/api/v1", tags=["sensors"])

SensorIdPath = Annotated[str, Path(pattern=SENSOR_ID_PATTERN, description="Sensor id")]


@router.get("/sensors", response_model=SensorPage, responses=error_responses(*AUTH_ERRORS, 503))
async def list_sensors(
    key: ReportsKey,
    state: StateDep,
    sensor_type: str | None = None,
    device_id: str | None = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    cursor: str | None = None,
) -> SensorPage:
    """Registered sensors in id order, with each one's latest reading."""
    check_limit(limit, state.settings.api_max_page_size, state.metrics)
    after = decode_cursor(cursor, "after")["after"] if cursor else None
    if after is not None and not isinstance(after, str):
        raise ApiError(422, "invalid_cursor", "the cursor is not one this API issued")
    params = {
        "after": after,
        "sensor_type": sensor_type,
        "device_id": device_id,
        "limit": limit + 1,
    }
    async with state.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.LIST_SENSORS, params)
        rows = await cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return SensorPage(
        items=[SensorOut(**r) for r in rows],
        next_cursor=encode_cursor(after=rows[-1]["sensor_id"]) if more else None,
    )


@router.get(
    "/sensors/{sensor_id}",
    response_model=SensorDetailOut,
    responses=error_responses(*AUTH_ERRORS, 404, 503),
)
async def get_sensor(sensor_id: SensorIdPath, key: ReportsKey, state: StateDep) -> SensorDetailOut:
    async with state.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.GET_SENSOR, (sensor_id,))
        row = await cur.fetchone()
    if row is None:
        raise ApiError(404, "not_found", f"sensor {sensor_id!r} is not registered")
    return SensorDetailOut(**row)


@router.get(
    "/sensors/{sensor_id}/readings",
    response_model=ReadingsPage,
    responses=error_responses(*AUTH_ERRORS, 404, 503),
)
async def sensor_readings(
    sensor_id: SensorIdPath,
    key: ReportsKey,
    state: StateDep,
    start: Annotated[datetime | None, Query(alias="from", description="default: to - 1 h")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="default: now")] = None,
    bucket: Bucket = "raw",
    limit: Annotated[int, Query(ge=1)] = 1000,
    cursor: str | None = None,
) -> ReadingsPage:
    """Readings in `[from, to)`, oldest first: raw, or bucketed from the 1-minute rollups
    (mean, min, max, stddev and count per bucket, buckets aligned to multiples of their width).
    Raw windows may span `API_MAX_RAW_RANGE_DAYS`, bucketed ones `API_MAX_BUCKET_RANGE_DAYS`."""
    settings = state.settings
    check_limit(limit, settings.api_max_page_size, state.metrics)
    max_days = (
        settings.api_max_raw_range_days if bucket == "raw" else settings.api_max_bucket_range_days
    )
    t0, t1 = time_window(
        start, end, max_days=max_days, default=timedelta(hours=1), metrics=state.metrics
    )
    page_start = t0
    if cursor:
        after = cursor_time(decode_cursor(cursor, "t"))
        step = ONE_MICROSECOND if bucket == "raw" else timedelta(seconds=BUCKET_SECONDS[bucket])
        page_start = max(t0, after + step)
    params = {"sensor_id": sensor_id, "start": page_start, "end": t1, "limit": limit + 1}
    if bucket != "raw":
        params["width"] = timedelta(seconds=BUCKET_SECONDS[bucket])
    async with state.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.SENSOR_EXISTS, (sensor_id,))
        if await cur.fetchone() is None:
            raise ApiError(404, "not_found", f"sensor {sensor_id!r} is not registered")
        await cur.execute(
            queries.RAW_READINGS if bucket == "raw" else queries.BUCKETED_READINGS, params
        )
        rows = await cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    items: list[RawPoint] | list[BucketPoint] = (
        [RawPoint(**r) for r in rows] if bucket == "raw" else [BucketPoint(**r) for r in rows]
    )
    return ReadingsPage(
        sensor_id=sensor_id,
        bucket=bucket,
        start=t0,
        end=t1,
        items=items,
        next_cursor=encode_cursor(t=rows[-1]["time"]) if more else None,
    )
