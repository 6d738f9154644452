"""Batching policy: what becomes a row, what becomes a reject, when a batch is full."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from core.wire import Limits
from ingestor.batching import Batch, InboundMessage, add_failure, add_message
from ingestor.mqtt import subscriptions
from ingestor.settings import IngestorSettings

NOW = datetime.now(UTC).replace(microsecond=0)
LIMITS = Limits(max_batch_items=10)


def msg(topic: str, body: object, *, raw: bytes | None = None, mid: int = 1) -> InboundMessage:
    payload = raw if raw is not None else json.dumps(body).encode()
    return InboundMessage(topic, payload, mid, generation=1, received_at=NOW.timestamp())


def obj(sid: str, minutes_ago: float, value: float = 1.0, **kw: object) -> dict[str, object]:
    t = NOW - timedelta(minutes=minutes_ago)
    return {"sensor_id": sid, "value": value, "timestamp": t.isoformat(), **kw}


def test_a_reading_becomes_a_row_with_receive_time_and_its_lag() -> None:
    b = Batch()
    lag = add_message(
        b,
        msg("sensors/s-1/readings", obj("s-1", 2, 3.5, unit="Cel")),
        limits=LIMITS,
        reject_cap=100,
    )
    assert b.rows == [(NOW - timedelta(minutes=2), "s-1", 3.5, NOW)]
    assert lag == pytest.approx(120.0)
    assert b.sensors["s-1"].unit == "Cel"
    assert len(b) == 1 and not b.rejects


def test_array_keeps_good_items_and_rejects_bad_ones_by_index() -> None:
    b = Batch()
    items = [obj("s-1", 3), obj("s-1", 2, value="x"), obj("s-1", 1)]  # type: ignore[arg-type]
    lag = add_message(b, msg("sensors/s-1/readings", items), limits=LIMITS, reject_cap=100)
    assert [r[0] for r in b.rows] == [NOW - timedelta(minutes=3), NOW - timedelta(minutes=1)]
    assert lag == pytest.approx(60.0)  # the newest reading's lag
    assert [(r.reason, r.item_index) for r in b.rejects] == [("invalid_value", 1)]


def test_whole_message_faults_are_one_reject_with_truncated_payload() -> None:
    b = Batch()
    raw = b"{not json" + b"x" * 500
    assert (
        add_message(b, msg("sensors/s-1/readings", None, raw=raw), limits=LIMITS, reject_cap=16)
        is None
    )
    (r,) = b.rejects
    assert (r.reason, r.item_index, r.payload, r.payload_bytes) == (
        "malformed_json",
        None,
        raw[:16],
        len(raw),
    )
    assert not b.rows and len(b) == 1  # still acknowledged with the batch


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("sensors/a b/readings", "invalid_sensor_id"),
        ("alerts/s-1", "unknown_topic"),
        ("something/else", "unknown_topic"),
    ],
)
def test_topics_outside_the_contract_are_rejected(topic: str, reason: str) -> None:
    b = Batch()
    add_message(b, msg(topic, obj("s-1", 1)), limits=LIMITS, reject_cap=100)
    assert [r.reason for r in b.rejects] == [reason]


def test_senml_pack_resolves_base_fields() -> None:
    b = Batch()
    bt = (NOW - timedelta(minutes=5)).timestamp()
    pack = [{"bn": "s-2", "bt": bt, "bu": "Cel", "v": 1.0}, {"t": 1, "v": 2.0}]
    add_message(b, msg("sensors/s-2/senml", pack), limits=LIMITS, reject_cap=100)
    assert [(r[1], r[2]) for r in b.rows] == [("s-2", 1.0), ("s-2", 2.0)]
    assert b.sensors["s-2"].unit == "Cel"


def test_sensor_type_and_unit_fill_in_from_later_messages_and_last_seen_moves() -> None:
    b = Batch()
    add_message(b, msg("sensors/s-1/readings", obj("s-1", 2)), limits=LIMITS, reject_cap=9)
    later = InboundMessage(
        "sensors/s-1/readings",
        json.dumps(obj("s-1", 1, sensor_type="temperature")).encode(),
        2,
        1,
        NOW.timestamp() + 5,
    )
    add_message(b, later, limits=LIMITS, reject_cap=9)
    seen = b.sensors["s-1"]
    assert (seen.sensor_type, seen.unit) == ("temperature", None)
    assert seen.last_seen == NOW + timedelta(seconds=5)


def test_full_by_rows_and_rejects() -> None:
    b = Batch()
    add_message(
        b,
        msg("sensors/s-1/readings", [obj("s-1", k) for k in range(4)]),
        limits=LIMITS,
        reject_cap=9,
    )
    assert not b.is_full(5)
    add_message(b, msg("sensors/s-1/readings", None, raw=b"[]"), limits=LIMITS, reject_cap=9)
    assert b.is_full(5)


def test_age_starts_with_the_first_message() -> None:
    b = Batch()
    assert b.age_s() == 0.0
    add_message(b, msg("sensors/s-1/readings", obj("s-1", 1)), limits=LIMITS, reject_cap=9)
    assert b.age_s(b.started + 0.25) == pytest.approx(0.25)


def test_failure_removes_partial_rows_of_that_message_only() -> None:
    b = Batch()
    add_message(b, msg("sensors/s-1/readings", obj("s-1", 3)), limits=LIMITS, reject_cap=9)
    bad = msg("sensors/s-1/readings", [obj("s-1", 2), obj("s-1", 1)], mid=2)
    add_message(b, bad, limits=LIMITS, reject_cap=9)
    add_failure(b, bad, RuntimeError("boom"), reject_cap=9)
    assert len(b.rows) == 1 and len(b.spans) == 1 and len(b) == 2
    assert [(r.reason, r.detail) for r in b.rejects] == [("internal_error", "RuntimeError: boom")]


def test_failure_before_registration_still_counts_the_message() -> None:
    b = Batch()
    m = msg("sensors/s-1/readings", obj("s-1", 1))
    add_failure(b, m, ValueError("early"), reject_cap=9)
    assert b.messages == [m] and not b.rows


def test_settings_keep_the_queue_at_least_receive_maximum() -> None:
    base = {"database_url": "postgresql://x/y", "mqtt_url": "mqtt://h:1883"}
    with pytest.raises(ValidationError, match="RECEIVE_MAXIMUM"):
        IngestorSettings(**base, ingest_receive_maximum=500, ingest_queue_max_messages=100)
    s = IngestorSettings(**base, ingest_client_id="fixed")
    assert s.client_id == "fixed"
    assert IngestorSettings(**base).client_id.startswith("sensorpipe-ingestor-")


def test_subscriptions_are_shared_only_with_a_group() -> None:
    assert subscriptions("") == ["sensors/+/readings", "sensors/+/senml"]
    assert subscriptions("ingestors") == [
        "$share/ingestors/sensors/+/readings",
        "$share/ingestors/sensors/+/senml",
    ]
