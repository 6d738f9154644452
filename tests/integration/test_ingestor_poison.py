"""Poison messages of every kind the wire contract names: each lands in ``rejected_messages``
with its reason, every good reading around it is stored, and the stream never stalls."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.integration._ingestor_harness import (
    Publisher,
    base_time,
    count_readings,
    payload,
    reading,
    rejects,
    running,
    settings_for,
    wait_until,
)
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def _ts(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def poison(sid: str) -> list[tuple[str, bytes, list[tuple[str, int | None]]]]:
    """(topic, payload, expected (reason, item_index) rows) for every kind of bad input."""
    topic = f"sensors/{sid}/readings"
    t = _ts(NOW - timedelta(minutes=5))
    good = {"sensor_id": sid, "value": 1.5, "timestamp": t}

    def with_(**kw: object) -> bytes:
        return payload({**good, **kw})

    def without(key: str) -> bytes:
        return payload({k: v for k, v in good.items() if k != key})

    whole = [
        (b'{"sensor_id": "' + sid.encode() + b'", "value": 1', "malformed_json"),
        (b"\xff\xfe\x00garbage", "malformed_json"),
        (b"42", "not_object"),
        (b'"a string"', "not_object"),
        (b'{"v": "' + b"x" * 9000 + b'"}', "too_large"),
        (with_(sensor_id="someone-else"), "sensor_mismatch"),
        (json.dumps(good).replace("1.5", "NaN").encode(), "invalid_value"),
        (with_(value="12.5"), "invalid_value"),
        (with_(value=True), "invalid_value"),
        (json.dumps(good).replace("1.5", "1e999").encode(), "invalid_value"),
        (with_(timestamp="2026-11-25T10:00:00"), "naive_timestamp"),
        (with_(timestamp=_ts(NOW + timedelta(hours=1))), "future_timestamp"),
        (with_(timestamp=_ts(NOW - timedelta(days=400))), "too_old"),
        (with_(timestamp="yesterday at noon"), "invalid_timestamp"),
        (without("value"), "missing_field"),
        (without("timestamp"), "missing_field"),
        (with_(seq=-1), "invalid_field"),
        (with_(unit="u" * 40), "invalid_field"),
        (b"[]", "empty_batch"),
        (payload([good] * 51), "batch_too_large"),
        # The database, not the wire format, refuses this one (text cannot hold NUL): the
        # writer isolates it from its batch.
        (with_(sensor_type="temp\u0000erature"), "storage_rejected"),
    ]
    cases = [(topic, body, [(reason, None)]) for body, reason in whole]
    # One bad element of a backlog array costs only that element.
    arr = [{**good, "timestamp": _ts(NOW - timedelta(minutes=4, seconds=k))} for k in range(4)]
    arr[2] = {**arr[2], "value": "oops"}
    cases.append((topic, payload(arr), [("invalid_value", 2)]))
    cases.append(("sensors/bad$id/readings", payload(good), [("invalid_sensor_id", None)]))
    senml = f"sensors/{sid}/senml"
    cases.append((senml, payload({"bn": 5}), [("invalid_senml", 0)]))
    cases.append((senml, payload([{"bn": sid, "vs": "on"}]), [("invalid_value", 0)]))
    return cases


def test_poison_is_rejected_with_its_reason_and_good_readings_flow(
    db_url: str, broker: MosquittoServer
) -> None:
    """Done-when 5: ~1% poison of every kind among good readings (objects, arrays, SenML)."""
    rng = random.Random(5)
    t0 = base_time()
    good: list[tuple[str, bytes]] = []
    expected_rows = 0
    for k in range(2400):
        sid = f"pz-{k % 12}"
        good.append(
            (f"sensors/{sid}/readings", payload(reading(sid, t0 + timedelta(seconds=k), k)))
        )
        expected_rows += 1
    for k in range(20):  # SenML packs of 5 records, base name/time resolved per RFC 8428
        sid = f"pz-senml-{k % 3}"
        bt = (t0 + timedelta(minutes=k)).timestamp()
        pack = [{"bn": sid, "bt": bt, "bu": "Cel", "v": 20.0, "t": 0}] + [
            {"v": 20.0 + i, "t": i} for i in range(1, 5)
        ]
        good.append((f"sensors/{sid}/senml", payload(pack)))
        expected_rows += 5
    bad = poison("pz-0")
    stream: list[tuple[str, bytes]] = good[:]
    for topic, body, _ in bad:
        stream.insert(rng.randrange(len(stream)), (topic, body))
    assert 0.005 < len(bad) / len(stream) < 0.02
    settings = settings_for(
        db_url,
        broker.url,
        max_payload_bytes=8192,
        max_batch_items=50,
        ingest_reject_payload_max_bytes=1024,
        ingest_batch_max_rows=500,
    )
    pub = Publisher(broker.url)
    with running(settings) as ing:
        for topic, body in stream:
            pub.publish(topic, body)
        pub.wait_all()
        wait_until(
            lambda: ing.metric("sensorpipe_ingestor_messages_acked_total") >= len(stream),
            20,
            "every message to be acknowledged",
        )
        expected = Counter(r for _, _, rows in bad for r in rows)
        per_reason = Counter[str]()
        for (reason, _), n in expected.items():
            per_reason[reason] += n
        for reason, n in per_reason.items():
            assert ing.metric("sensorpipe_ingestor_rejected_total", reason=reason) == n, reason
    pub.close()
    # Every good reading stored (the array's 3 good elements too), every bad one kept.
    assert count_readings(db_url) == expected_rows + 3
    stored = rejects(db_url)
    assert Counter((reason, idx) for _, reason, idx, _ in stored) == expected
    by_reason = {reason: body for _, reason, _, body in stored}
    assert len(by_reason["too_large"]) == 1024  # raw bytes kept, truncated to the cap
    with psycopg.connect(db_url) as conn:
        sizes = conn.execute(
            "SELECT payload_bytes FROM rejected_messages WHERE reason = 'too_large'"
        ).fetchone()
        topics = {r[0] for r in conn.execute("SELECT DISTINCT topic FROM rejected_messages")}
    assert sizes is not None and sizes[0] > 8192
    assert "sensors/bad$id/readings" in topics


def test_unregistered_sensors_are_rejected_when_registration_is_required(
    db_url: str, broker: MosquittoServer
) -> None:
    """With REQUIRE_REGISTERED_SENSORS, readings of unknown sensors become ``unknown_sensor``
    rejects (one per message) while registered sensors are stored and their last_seen_at moves."""
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO sensors (sensor_id, sensor_type) VALUES ('rq-known', 'x')")
    t0 = base_time()
    pub = Publisher(broker.url)
    settings = settings_for(db_url, broker.url, require_registered_sensors=True)
    with running(settings) as ing:
        for k in range(50):
            for sid in ("rq-known", "rq-stranger"):
                pub.publish(
                    f"sensors/{sid}/readings", payload(reading(sid, t0 + timedelta(seconds=k), k))
                )
        pub.publish(
            "sensors/rq-stranger/readings",
            payload(
                [reading("rq-stranger", t0 + timedelta(hours=1, seconds=k), k) for k in range(10)]
            ),
        )
        pub.wait_all()
        wait_until(
            lambda: ing.metric("sensorpipe_ingestor_messages_acked_total") >= 101,
            15,
            "every message to be acknowledged",
        )
        assert ing.metric("sensorpipe_ingestor_rejected_total", reason="unknown_sensor") == 51
    pub.close()
    assert count_readings(db_url, "rq-known") == 50
    assert count_readings(db_url, "rq-stranger") == 0
    with psycopg.connect(db_url) as conn:
        sensors = conn.execute(
            "SELECT sensor_id, last_seen_at IS NOT NULL FROM sensors ORDER BY 1"
        ).fetchall()
    assert sensors == [("rq-known", True)]
    assert Counter(r[1] for r in rejects(db_url)) == {"unknown_sensor": 51}
