"""Pure pieces of the API: the error table, cursors and windows, message grouping, settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import PoolTimeout, TooManyRequests

from api.errors import ApiError, map_exception
from api.metrics import ApiMetrics
from api.paging import cursor_time, decode_cursor, encode_cursor, time_window
from api.routes.ingest import _messages
from api.settings import ApiSettings
from core import wire
from core.errors import (
    BrokerError,
    InsufficientDataError,
    ModelError,
    NotFoundError,
    StorageError,
    WireError,
)


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (NotFoundError("x"), 404, "not_found"),
        (InsufficientDataError("few", needed=50, available=3), 422, "insufficient_data"),
        (WireError("invalid_value", "nan"), 422, "invalid_value"),
        (WireError("batch_too_large", "5 > 3"), 413, "batch_too_large"),
        (WireError("too_large", "big"), 413, "too_large"),
        (ModelError("missing", "no file"), 503, "model_unavailable"),
        (BrokerError("down"), 503, "broker_unavailable"),
        (StorageError("down"), 503, "database_unavailable"),
        (TooManyRequests("busy"), 503, "database_busy"),
        (PoolTimeout("slow"), 503, "database_unavailable"),
        (ApiError(429, "rate_limited", "slow down"), 429, "rate_limited"),
        (RuntimeError("boom"), 500, "internal_error"),
    ],
)
def test_error_table(exc: Exception, status: int, code: str) -> None:
    got_status, got_code, message, _ = map_exception(exc)
    assert (got_status, got_code) == (status, code)
    assert "boom" not in message  # an unexpected error's text never reaches the client


def test_error_extras_say_how_much_data_is_needed() -> None:
    _, _, message, extra = map_exception(InsufficientDataError("3 of 50", needed=50, available=3))
    assert extra == {"needed": 50, "available": 3} and "50" in message


def test_storage_errors_do_not_leak_connection_details() -> None:
    _, _, message, _ = map_exception(StorageError("postgresql://u:secret@db/x refused"))
    assert "secret" not in message


def test_cursor_round_trip_and_tampering() -> None:
    t = datetime(2026, 11, 25, 10, 0, 0, 250000, tzinfo=UTC)
    doc = decode_cursor(encode_cursor(t=t, id="abc"), "t", "id")
    assert cursor_time(doc) == t and doc["id"] == "abc"
    for bad in ("", "!!!", encode_cursor(x=1), encode_cursor(t="yesterday")):
        with pytest.raises(ApiError) as err:
            cursor_time(decode_cursor(bad, "t"))
        assert err.value.code == "invalid_cursor"


def test_time_window_defaults_and_bounds() -> None:
    m = ApiMetrics()
    start, end = time_window(None, None, max_days=1, default=timedelta(hours=1), metrics=m)
    assert end - start == timedelta(hours=1) and end.tzinfo is not None
    now = datetime.now(UTC)
    with pytest.raises(ApiError, match="at most 1 days"):
        time_window(now - timedelta(days=2), now, max_days=1, default=timedelta(hours=1), metrics=m)
    with pytest.raises(ApiError, match="before"):
        time_window(now, now, max_days=1, default=timedelta(hours=1), metrics=m)
    with pytest.raises(ApiError, match="UTC offset"):
        time_window(
            now.replace(tzinfo=None), None, max_days=1, default=timedelta(hours=1), metrics=m
        )


def _r(sid: str, i: int) -> wire.Reading:
    return wire.Reading(
        sensor_id=sid, time=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i), value=float(i)
    )


def test_readings_are_grouped_per_sensor_in_order_and_split() -> None:
    readings = [_r("a", i) for i in range(1203)] + [_r("b", 0)]
    msgs = _messages(readings)
    assert [t for t, _ in msgs] == ["sensors/a/readings"] * 3 + ["sensors/b/readings"]
    decoded = [
        wire.decode_readings(
            p,
            topic_sensor_id=t.split("/")[1],
            now=datetime(2026, 1, 1, tzinfo=UTC),
            limits=wire.Limits(max_age_s=None, max_future_skew_s=None),
        )
        for t, p in msgs
    ]
    assert [len(d.readings) for d in decoded] == [500, 500, 203, 1]
    assert [r.value for d in decoded[:3] for r in d.readings] == [float(i) for i in range(1203)]
    assert msgs[3][1].startswith(b"{")  # a lone reading travels as an object, like a device's


def test_settings_cors_and_limits() -> None:
    s = ApiSettings(
        database_url="postgresql://x/y",
        mqtt_url="mqtt://h:1883",
        api_cors_origins=" https://a.example , http://b.example ",
    )
    assert s.cors_origins == ["https://a.example", "http://b.example"]
    assert ApiSettings(database_url="postgresql://x/y", mqtt_url="mqtt://h").cors_origins == []
    with pytest.raises(ValueError, match="must start with"):
        ApiSettings(
            database_url="postgresql://x/y", mqtt_url="mqtt://h", api_cors_origins="ftp://x"
        )
