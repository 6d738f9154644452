"""``POST /api/v1/data/ingest``: validation, publishing, rejects, limits and idempotency."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core import wire
from tests.integration.api_support import Keys, Subscriber, make_settings
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

INGEST = "/api/v1/data/ingest"


@pytest.fixture
def sub(broker: MosquittoServer) -> Iterator[Subscriber]:
    # Exact topics: other tests may share the session broker.
    s = Subscriber(broker, *(f"sensors/{sid}/readings" for sid in ("hx.1", "hx.a", "hx.b", "hx.i")))
    yield s
    s.close()


def reading(sensor_id: str = "hx.1", value: float = 1.5, **extra: object) -> dict[str, object]:
    return {"sensor_id": sensor_id, "value": value, "timestamp": time.time(), **extra}


def rejected_rows(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT source, topic, item_index, reason, payload FROM rejected_messages ORDER BY id"
        ).fetchall()


def test_one_reading_is_published_like_a_device(
    api_client: TestClient, api_keys: Keys, sub: Subscriber
) -> None:
    body = reading("hx.1", 21.5, unit="Cel", seq=7)
    r = api_client.post(INGEST, json=body, headers=api_keys.headers("ingest"))
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 1, "rejected": 0, "errors": []}
    [(topic, payload)] = sub.wait_for(1)
    assert topic == "sensors/hx.1/readings"
    decoded = wire.decode_readings(payload, topic_sensor_id="hx.1")
    assert [(x.value, x.unit, x.seq) for x in decoded.readings] == [(21.5, "Cel", 7)]


def test_batch_with_bad_items_is_partly_accepted_and_rejects_kept(
    api_client: TestClient, api_keys: Keys, sub: Subscriber, db_url: str
) -> None:
    batch = [
        reading("hx.a", 1.0),
        {"sensor_id": "hx.a", "value": "hot", "timestamp": time.time()},
        reading("hx.b", 2.0),
        reading("bad/id", 3.0),
        reading("hx.a", 4.0),
    ]
    batch[4]["timestamp"] = batch[0]["timestamp"] + 1  # type: ignore[operator]
    r = api_client.post(INGEST, json=batch, headers=api_keys.headers("ingest"))
    assert r.status_code == 202
    out = r.json()
    assert (out["accepted"], out["rejected"]) == (3, 2)
    assert [(e["index"], e["reason"]) for e in out["errors"]] == [
        (1, "invalid_value"),
        (3, "invalid_sensor_id"),
    ]
    # One message per sensor: hx.a's two readings travel together, in order.
    msgs = dict(sub.wait_for(2))
    assert set(msgs) == {"sensors/hx.a/readings", "sensors/hx.b/readings"}
    a = wire.decode_readings(msgs["sensors/hx.a/readings"], topic_sensor_id="hx.a").readings
    assert [x.value for x in a] == [1.0, 4.0]
    rows = rejected_rows(db_url)
    assert [(s, t, i, reason) for s, t, i, reason, _ in rows] == [
        ("http", "http:/api/v1/data/ingest", 1, "invalid_value"),
        ("http", "http:/api/v1/data/ingest", 3, "invalid_sensor_id"),
    ]
    assert json.loads(bytes(rows[0][4]))["value"] == "hot"  # the item itself is kept


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "malformed_json"),
        (b"[]", "empty_batch"),
        (b'"a string"', "not_object"),
        (b'{"sensor_id": "hx.1", "value": NaN, "timestamp": 1}', "invalid_value"),
        (
            json.dumps(
                {"sensor_id": "hx.1", "value": 1, "timestamp": "2026-11-25T10:00:00"}
            ).encode(),
            "naive_timestamp",
        ),
        (
            json.dumps({"sensor_id": "hx.1", "value": 1, "timestamp": time.time() + 3600}).encode(),
            "future_timestamp",
        ),
    ],
)
def test_whole_body_errors_are_422_and_kept(
    api_client: TestClient, api_keys: Keys, db_url: str, body: bytes, code: str
) -> None:
    r = api_client.post(INGEST, content=body, headers=api_keys.headers("ingest"))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code
    [(source, _topic, index, reason, payload)] = rejected_rows(db_url)
    assert (source, index, reason) == ("http", None, code)
    assert bytes(payload) == body


def test_batch_and_body_limits_are_413(
    db_url: str, broker: MosquittoServer, api_models_dir: Path, api_keys: Keys
) -> None:
    settings = make_settings(
        db_url, broker.url, api_models_dir, max_batch_items=3, api_max_body_bytes=2048
    )
    with TestClient(create_app(settings)) as c:
        h = api_keys.headers("ingest")
        r = c.post(INGEST, json=[reading() for _ in range(4)], headers=h)
        assert r.status_code == 413 and r.json()["error"]["code"] == "batch_too_large"
        big = json.dumps([reading(sensor_type="x" * 60) for _ in range(3)] * 10).encode()
        r = c.post(INGEST, content=big, headers=h)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streamed
            for _ in range(10):
                yield b" " * 400

        r = c.post(INGEST, content=chunks(), headers=h)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        metrics = c.get("/metrics").text
        assert 'sensorpipe_api_limit_hits_total{limit="body_bytes"} 2.0' in metrics
        assert 'sensorpipe_api_limit_hits_total{limit="batch_items"} 1.0' in metrics


def test_idempotent_replay_publishes_once(
    api_client: TestClient, api_keys: Keys, sub: Subscriber, db_url: str
) -> None:
    h = api_keys.headers("ingest", **{"Idempotency-Key": "batch-0001"})
    body = json.dumps(
        [reading("hx.i", 1.0), {"sensor_id": "hx.i", "value": None, "timestamp": time.time()}]
    ).encode()
    first = api_client.post(INGEST, content=body, headers=h)
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    again = api_client.post(INGEST, content=body, headers=h)
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    time.sleep(0.3)  # a second publish, if any, would have arrived by now
    assert len(sub.wait_for(1)) == 1
    assert len(rejected_rows(db_url)) == 1  # the bad item was recorded once
    # Same key, different body: a clear refusal, nothing published.
    other = api_client.post(INGEST, json=reading("hx.i", 2.0), headers=h)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    # Keys are per API key: another client may use the same string.
    mine = api_client.post(
        INGEST, content=body, headers=api_keys.headers("admin", **{"Idempotency-Key": "batch-0001"})
    )
    assert mine.status_code == 202 and "idempotent-replayed" not in mine.headers


def test_failed_request_releases_the_idempotency_key(
    api_client: TestClient, api_keys: Keys
) -> None:
    h = api_keys.headers("ingest", **{"Idempotency-Key": "retry-me"})
    assert api_client.post(INGEST, content=b"{broken", headers=h).status_code == 422
    # The client fixes its body and retries with the same key: processed, not "reused".
    r = api_client.post(INGEST, json=reading(), headers=h)
    assert r.status_code == 202 and "idempotent-replayed" not in r.headers


@pytest.mark.parametrize("bad", ["", "has space", "x" * 256])
def test_invalid_idempotency_key_is_422(api_client: TestClient, api_keys: Keys, bad: str) -> None:
    r = api_client.post(
        INGEST, json=reading(), headers=api_keys.headers("ingest", **{"Idempotency-Key": bad})
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] in ("invalid_idempotency_key", "validation_error")
