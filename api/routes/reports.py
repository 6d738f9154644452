"""``/api/v1/reports``: what an operations engineer asks of a window of data, as JSON or CSV.

* ``summary``: per sensor, count, min/mean/max/p95/stddev, completeness against the expected
  reporting interval, gaps (silences over twice that interval, window edges included) and
  incidents by severity;
* ``aggregates``: bucketed mean/min/max/stddev/count from the exact 1-minute rollups.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from psycopg.rows import dict_row
from pydantic import BaseModel

from api import queries
from api.deps import ReportsKey, StateDep
from api.errors import ApiError
from api.paging import BUCKET_SECONDS, AggBucket, time_window
from api.schemas import (
    AUTH_ERRORS,
    AggregateRow,
    AggregatesReport,
    SensorSummary,
    SummaryReport,
    error_responses,
)
from core.topics import SENSOR_ID_PATTERN

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

Format = Literal["json", "csv"]
_CSV_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "description": "JSON by default; CSV with `format=csv`.",
    }
}


def _csv(rows: Sequence[BaseModel], model: type[BaseModel], filename: str) -> Response:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(model.model_fields), lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.model_dump().items()})
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _cell(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return "" if v is None else v


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _summary_row(row: dict[str, Any], t0: datetime, t1: datetime) -> SensorSummary:
    """Add what needs the window: expected count, completeness, and gaps at its edges."""
    interval = row["expected_interval_s"]
    gaps, max_gap = int(row["gaps"]), row["max_gap_s"]
    expected_count = completeness = None
    # A window reaching into the future is judged up to now: the future is not a gap.
    horizon = min(t1, datetime.now(UTC))
    span_s = max(0.0, (horizon - t0).total_seconds())
    if interval:
        expected_count = math.floor(span_s / interval)
        completeness = min(1.0, row["count"] / expected_count) if expected_count else None
        first, last = row["first_time"], row["last_time"]
        edges = (
            [(first - t0).total_seconds(), (horizon - last).total_seconds()]
            if first is not None
            else [span_s]
        )
        for edge in edges:
            if edge > 2 * interval:
                gaps += 1
                max_gap = edge if max_gap is None else max(max_gap, edge)
    return SensorSummary(
        sensor_id=row["sensor_id"],
        unit=row["unit"],
        count=row["count"],
        min=row["min"],
        mean=row["mean"],
        max=row["max"],
        p95=row["p95"],
        stddev=row["stddev"],
        first_time=row["first_time"],
        last_time=row["last_time"],
        expected_interval_s=interval,
        expected_count=expected_count,
        completeness=completeness,
        gaps=gaps,
        max_gap_s=float(max_gap) if max_gap is not None else None,
        anomalies_warning=row["anomalies_warning"],
        anomalies_critical=row["anomalies_critical"],
        anomalies_deadman=row["anomalies_deadman"],
    )


@router.get(
    "/summary",
    response_model=SummaryReport,
    responses={**_CSV_RESPONSES, **error_responses(*AUTH_ERRORS, 404, 503)},
)
async def summary(
    key: ReportsKey,
    state: StateDep,
    start: Annotated[datetime | None, Query(alias="from", description="default: to - 24 h")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="default: now")] = None,
    sensor_id: Annotated[str | None, Query(pattern=SENSOR_ID_PATTERN)] = None,
    format: Format = "json",
) -> Any:
    """Per-sensor summary of `[from, to)` (at most `API_MAX_REPORT_RANGE_DAYS`)."""
    t0, t1 = time_window(
        start,
        end,
        max_days=state.settings.api_max_report_range_days,
        default=timedelta(hours=24),
        metrics=state.metrics,
    )
    async with state.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.SUMMARY, {"start": t0, "end": t1, "sensor_id": sensor_id})
        rows = await cur.fetchall()
    if sensor_id is not None and not rows:
        raise ApiError(404, "not_found", f"sensor {sensor_id!r} is not registered")
    sensors = [_summary_row(r, t0, t1) for r in rows]
    if format == "csv":
        return _csv(sensors, SensorSummary, f"summary_{_stamp(t0)}_{_stamp(t1)}.csv")
    return SummaryReport(start=t0, end=t1, sensors=sensors)


@router.get(
    "/aggregates",
    response_model=AggregatesReport,
    responses={**_CSV_RESPONSES, **error_responses(*AUTH_ERRORS, 503)},
)
async def aggregates(
    key: ReportsKey,
    state: StateDep,
    bucket: AggBucket = "1h",
    start: Annotated[datetime | None, Query(alias="from", description="default: to - 24 h")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="default: now")] = None,
    sensor_id: Annotated[str | None, Query(pattern=SENSOR_ID_PATTERN)] = None,
    format: Format = "json",
) -> Any:
    """Bucketed aggregates of every sensor (or one) over `[from, to)`. A result over
    `API_MAX_AGGREGATE_ROWS` rows is refused (422): widen the bucket or narrow the window."""
    settings = state.settings
    t0, t1 = time_window(
        start,
        end,
        max_days=settings.api_max_bucket_range_days,
        default=timedelta(hours=24),
        metrics=state.metrics,
    )
    max_rows = settings.api_max_aggregate_rows
    params = {
        "width": timedelta(seconds=BUCKET_SECONDS[bucket]),
        "start": t0,
        "end": t1,
        "sensor_id": sensor_id,
        "limit": max_rows + 1,
    }
    async with state.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.AGGREGATES, params)
        rows = await cur.fetchall()
    if len(rows) > max_rows:
        state.metrics.limit_hits.labels("aggregate_rows").inc()
        raise ApiError(
            422,
            "too_many_rows",
            f"more than {max_rows} rows: widen the bucket or narrow the window",
            max_rows=max_rows,
        )
    out = [AggregateRow(**r) for r in rows]
    if format == "csv":
        return _csv(out, AggregateRow, f"aggregates_{bucket}_{_stamp(t0)}_{_stamp(t1)}.csv")
    return AggregatesReport(start=t0, end=t1, bucket=bucket, rows=out)
