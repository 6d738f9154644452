"""Sensors, readings (raw and bucketed, paginated), anomalies and reports (JSON and CSV)."""

from __future__ import annotations

import csv
import io
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.integration.api_support import (
    Keys,
    add_event,
    add_readings,
    add_sensor,
    iso,
    make_settings,
)
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

# A fixed window an hour long, in the recent past, aligned to the hour.
T0 = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
T1 = T0 + timedelta(hours=1)


@pytest.fixture
def data(db_url: str) -> None:
    """rp.a: every 10 s for the hour except a 5-minute hole; rp.b: registered, silent."""
    add_sensor(db_url, "rp.a", interval_s=10.0)
    add_sensor(db_url, "rp.b", interval_s=60.0, sensor_type="pressure", unit="Pa")
    values = [float(i % 60) for i in range(360)]  # 0..59 repeating: min 0, max 59
    times = add_readings(db_url, "rp.a", values, end=T1 - timedelta(seconds=10))
    hole = [t for t in times if T0 + timedelta(minutes=20) <= t < T0 + timedelta(minutes=25)]
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "DELETE FROM sensor_readings WHERE sensor_id = 'rp.a' AND time = ANY(%s)", (hole,)
        )
        # The trigger-maintained rollup is not adjusted by DELETE: rebuild it for the test data.
        conn.execute("DELETE FROM readings_1m")
        conn.execute(
            "INSERT INTO readings_1m SELECT sensor_id, date_trunc('minute', time), "
            "count(*), sum(value), sum(value*value), min(value), max(value) "
            "FROM sensor_readings GROUP BY 1, 2"
        )
    add_event(
        db_url, "rp.a", opened_at=T0 + timedelta(minutes=5), severity="warning", state="resolved"
    )
    add_event(db_url, "rp.a", opened_at=T0 + timedelta(minutes=30), severity="critical")
    add_event(
        db_url, "rp.b", opened_at=T0 + timedelta(minutes=40), kind="deadman", severity="warning"
    )


def get(c: TestClient, keys: Keys, path: str, **params: Any) -> Any:
    r = c.get(path, params=params, headers=keys.headers("reports"))
    assert r.status_code == 200, r.text
    return r.json()


def test_sensors_list_and_detail(data: None, api_client: TestClient, api_keys: Keys) -> None:
    page = get(api_client, api_keys, "/api/v1/sensors", limit=1)
    assert [s["sensor_id"] for s in page["items"]] == ["rp.a"]
    assert page["items"][0]["last_reading_value"] == 59.0
    page2 = get(api_client, api_keys, "/api/v1/sensors", limit=1, cursor=page["next_cursor"])
    assert [s["sensor_id"] for s in page2["items"]] == ["rp.b"]
    assert page2["next_cursor"] is None
    only = get(api_client, api_keys, "/api/v1/sensors", sensor_type="pressure")
    assert [s["sensor_id"] for s in only["items"]] == ["rp.b"]
    detail = get(api_client, api_keys, "/api/v1/sensors/rp.a")
    assert detail["open_anomalies"] == 1 and detail["expected_interval_s"] == 10.0
    r = api_client.get("/api/v1/sensors/zz", headers=api_keys.headers("reports"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_raw_readings_paginate_without_loss(
    data: None, api_client: TestClient, api_keys: Keys
) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        params: dict[str, Any] = {"from": iso(T0), "to": iso(T1), "limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = get(api_client, api_keys, "/api/v1/sensors/rp.a/readings", **params)
        seen += [p["time"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 330 == len(set(seen))  # 360 minus the 30-reading hole
    assert seen == sorted(seen)


def test_bucketed_readings_come_from_rollups(
    data: None, api_client: TestClient, api_keys: Keys
) -> None:
    page = get(
        api_client,
        api_keys,
        "/api/v1/sensors/rp.a/readings",
        bucket="15m",
        **{"from": iso(T0), "to": iso(T1)},
    )
    items = page["items"]
    assert [i["n"] for i in items] == [90, 60, 90, 90]
    first = items[0]
    assert datetime.fromisoformat(first["time"]) == T0
    assert (first["min"], first["max"]) == (0.0, 59.0)
    values = [float(i % 60) for i in range(90)]  # what the first 15 minutes hold
    assert first["mean"] == pytest.approx(statistics.fmean(values))
    assert first["stddev"] == pytest.approx(statistics.pstdev(values))


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"bucket": "7m"}, "validation_error"),
        ({"from": "2026-01-01T00:00:00"}, "naive_timestamp"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "invalid_range"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "range_too_large"),
        ({"cursor": "bm9wZQ"}, "invalid_cursor"),
        ({"limit": 1_000_000}, "limit_too_large"),
    ],
)
def test_readings_bad_parameters_are_422(
    data: None, api_client: TestClient, api_keys: Keys, params: dict[str, Any], code: str
) -> None:
    r = api_client.get(
        "/api/v1/sensors/rp.a/readings", params=params, headers=api_keys.headers("reports")
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code


def test_anomalies_filter_and_paginate(data: None, api_client: TestClient, api_keys: Keys) -> None:
    window = {"from": iso(T0), "to": iso(T1)}
    everything = get(api_client, api_keys, "/api/v1/anomalies", **window)
    kinds = [(e["sensor_id"], e["kind"], e["severity"], e["state"]) for e in everything["items"]]
    assert kinds == [
        ("rp.b", "deadman", "warning", "open"),
        ("rp.a", "anomaly", "critical", "open"),
        ("rp.a", "anomaly", "warning", "resolved"),
    ]  # newest first
    crit = get(api_client, api_keys, "/api/v1/anomalies", severity="critical", **window)
    assert len(crit["items"]) == 1
    opened = get(
        api_client, api_keys, "/api/v1/anomalies", state="open", sensor_id="rp.a", **window
    )
    assert len(opened["items"]) == 1
    p1 = get(api_client, api_keys, "/api/v1/anomalies", limit=2, **window)
    p2 = get(api_client, api_keys, "/api/v1/anomalies", limit=2, cursor=p1["next_cursor"], **window)
    ids = [e["event_id"] for e in p1["items"] + p2["items"]]
    assert ids == [e["event_id"] for e in everything["items"]]
    assert p2["next_cursor"] is None


def test_summary_report_json_and_csv(data: None, api_client: TestClient, api_keys: Keys) -> None:
    window = {"from": iso(T0), "to": iso(T1)}
    report = get(api_client, api_keys, "/api/v1/reports/summary", **window)
    a, b = report["sensors"]
    assert a["sensor_id"] == "rp.a" and a["count"] == 330
    assert (a["min"], a["max"]) == (0.0, 59.0)
    assert a["p95"] == pytest.approx(56.0, abs=1.0)
    assert a["expected_count"] == 360
    assert a["completeness"] == pytest.approx(330 / 360)
    assert a["gaps"] == 1 and a["max_gap_s"] == pytest.approx(310.0)
    assert (a["anomalies_warning"], a["anomalies_critical"], a["anomalies_deadman"]) == (1, 1, 0)
    assert b["sensor_id"] == "rp.b" and b["count"] == 0 and b["completeness"] == 0.0
    assert b["gaps"] == 1 and b["anomalies_deadman"] == 1
    r = api_client.get(
        "/api/v1/reports/summary",
        params={**window, "format": "csv"},
        headers=api_keys.headers("reports"),
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith('attachment; filename="summary_')
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["sensor_id"] for row in rows] == ["rp.a", "rp.b"]
    assert rows[0]["count"] == "330" and rows[1]["mean"] == ""
    one = get(api_client, api_keys, "/api/v1/reports/summary", sensor_id="rp.b", **window)
    assert len(one["sensors"]) == 1
    r = api_client.get(
        "/api/v1/reports/summary", params={"sensor_id": "zz"}, headers=api_keys.headers("reports")
    )
    assert r.status_code == 404


def test_aggregates_json_csv_and_row_bound(
    data: None, api_client: TestClient, api_keys: Keys
) -> None:
    window = {"from": iso(T0), "to": iso(T1)}
    agg = get(api_client, api_keys, "/api/v1/reports/aggregates", bucket="1h", **window)
    assert [(row["sensor_id"], row["n"]) for row in agg["rows"]] == [("rp.a", 330)]
    r = api_client.get(
        "/api/v1/reports/aggregates",
        params={**window, "bucket": "5m", "format": "csv"},
        headers=api_keys.headers("reports"),
    )
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="aggregates_5m_' in r.headers["content-disposition"]
    assert len(list(csv.DictReader(io.StringIO(r.text)))) == 11  # 12 minus the hole's bucket
    r = api_client.get(
        "/api/v1/reports/aggregates",
        params={"from": iso(T0 - timedelta(days=300)), "to": iso(T1), "bucket": "1m"},
        headers=api_keys.headers("reports"),
    )
    assert r.status_code == 200  # within the bucketed range limit; only 60 rows exist


def test_aggregate_row_bound_is_422(
    data: None, db_url: str, broker: MosquittoServer, api_models_dir: Path, api_keys: Keys
) -> None:
    settings = make_settings(db_url, broker.url, api_models_dir, api_max_aggregate_rows=5)
    with TestClient(create_app(settings)) as c:
        r = c.get(
            "/api/v1/reports/aggregates",
            params={"from": iso(T0), "to": iso(T1), "bucket": "5m"},
            headers=api_keys.headers("reports"),
        )
        assert r.status_code == 422
        assert r.json()["error"] == {
            "code": "too_many_rows",
            "max_rows": 5,
            "request_id": r.headers["x-request-id"],
            "message": "more than 5 rows: widen the bucket or narrow the window",
        }
