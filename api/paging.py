"""Time windows, buckets and opaque cursors shared by the list and report endpoints."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from api.errors import ApiError
from api.metrics import ApiMetrics

Bucket = Literal["raw", "1m", "5m", "15m", "1h", "6h", "1d"]
AggBucket = Literal["1m", "5m", "15m", "1h", "6h", "1d"]
BUCKET_SECONDS: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "1h": 3600,
    "6h": 21600,
    "1d": 86400,
}
ONE_MICROSECOND = timedelta(microseconds=1)


def time_window(
    start: datetime | None,
    end: datetime | None,
    *,
    max_days: float,
    default: timedelta,
    metrics: ApiMetrics,
) -> tuple[datetime, datetime]:
    """``[start, end)`` with defaults (``end`` = now, ``start`` = end - default), checked."""
    for name, t in (("from", start), ("to", end)):
        if t is not None and (t.tzinfo is None or t.utcoffset() is None):
            raise ApiError(422, "naive_timestamp", f"{name!r} needs a UTC offset (e.g. Z)")
    end = (end or datetime.now(UTC)).astimezone(UTC)
    start = (start or end - default).astimezone(UTC)
    if start >= end:
        raise ApiError(422, "invalid_range", "'from' must be before 'to'")
    if end - start > timedelta(days=max_days):
        metrics.limit_hits.labels("time_range").inc()
        raise ApiError(
            422,
            "range_too_large",
            f"the window may span at most {max_days:g} days",
            max_days=max_days,
        )
    return start, end


def check_limit(limit: int, maximum: int, metrics: ApiMetrics) -> int:
    if limit > maximum:
        metrics.limit_hits.labels("page_size").inc()
        raise ApiError(422, "limit_too_large", f"limit may be at most {maximum}", max_limit=maximum)
    return limit


def encode_cursor(**fields: Any) -> str:
    doc = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, *keys: str) -> dict[str, Any]:
    """Fields of a cursor this API issued; 422 for anything else."""
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
        if not isinstance(doc, dict) or set(doc) != set(keys):
            raise ValueError("unexpected fields")
        return doc
    except (ValueError, UnicodeError) as exc:
        raise ApiError(422, "invalid_cursor", "the cursor is not one this API issued") from exc


def cursor_time(doc: dict[str, Any], key: str = "t") -> datetime:
    try:
        t = datetime.fromisoformat(str(doc[key]))
    except ValueError as exc:
        raise ApiError(422, "invalid_cursor", "the cursor is not one this API issued") from exc
    if t.tzinfo is None:
        raise ApiError(422, "invalid_cursor", "the cursor is not one this API issued")
    return t
