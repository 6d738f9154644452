"""The scorer worker's intake path without I/O: topic routing by shard, decoding, causality."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from core.topics import TopicKind, shard_of
from core.wire import Reading, encode_reading, encode_readings, encode_senml
from scorer.settings import ScorerSettings
from scorer.worker import BatchResult, Inbound, ScorerWorker

NOW = datetime.now(UTC).replace(microsecond=0)


def make_worker(**overrides: Any) -> ScorerWorker:
    async def build() -> ScorerWorker:  # the MQTT client binds to a running loop
        settings = ScorerSettings(
            database_url="postgresql://unused", mqtt_url="mqtt://unused", **overrides
        )
        return ScorerWorker(settings)

    return asyncio.run(build())


def r(sid: str, dt_s: float, value: float = 1.0) -> Reading:
    return Reading(sensor_id=sid, time=NOW - timedelta(seconds=100 - dt_s), value=value)


def test_routing_keeps_only_this_shards_readings_topics() -> None:
    w = make_worker(scorer_shard="1/3")
    mine = next(f"s{i}" for i in range(100) if shard_of(f"s{i}", 3) == 1)
    other = next(f"s{i}" for i in range(100) if shard_of(f"s{i}", 3) != 1)
    assert w._route(f"sensors/{mine}/readings") == (TopicKind.READINGS, mine)
    assert w._route(f"sensors/{mine}/senml") == (TopicKind.SENML, mine)
    assert w._route(f"sensors/{other}/readings") is None
    assert w._route("sensors/bad+id/readings") is None
    assert w.metrics.rejected.labels("invalid_sensor_id")._value.get() == 1


def test_decode_counts_rejects_orders_by_time_and_drops_what_was_already_scored() -> None:
    w = make_worker()
    batch: list[Inbound] = [
        (1.0, TopicKind.READINGS, "a", encode_readings([r("a", 3), r("a", 1), r("a", 2)])),
        (2.0, TopicKind.READINGS, "a", b"{not json"),
        (3.0, TopicKind.READINGS, "b", encode_reading(r("b", 5))),
        (4.0, TopicKind.READINGS, "b", encode_reading(r("b", 5))),  # a QoS 1 redelivery
        (5.0, TopicKind.SENML, "c", encode_senml([r("c", 1), r("c", 2)])),
        (
            6.0,
            TopicKind.READINGS,
            "b",
            b'{"sensor_id":"b","value":"x","timestamp":%d}' % int(NOW.timestamp()),
        ),
    ]
    result = BatchResult()
    readings, arrived = w._decode(batch, datetime.now(UTC), result)
    assert [(x.sensor_id, x.time) for x in readings] == sorted(
        [(x.sensor_id, x.time) for x in readings], key=lambda p: p[1]
    )
    assert [x.sensor_id for x in readings if x.sensor_id == "a"] == ["a"] * 3
    a_times = [x.time for x in readings if x.sensor_id == "a"]
    assert a_times == sorted(a_times)
    assert len(readings) == 6 and len(arrived) == 6
    assert (
        dict(zip([(x.sensor_id, x.time) for x in readings], arrived, strict=True))[
            ("b", r("b", 5).time)
        ]
        == 3.0
    )
    assert result.rejected == {"malformed_json": 1, "invalid_value": 1}
    assert result.stale == 1
    # The next batch: anything not newer than the last scored reading of its sensor is stale.
    later: list[Inbound] = [
        (7.0, TopicKind.READINGS, "a", encode_reading(r("a", 2))),
        (8.0, TopicKind.READINGS, "a", encode_reading(r("a", 4))),
    ]
    result = BatchResult()
    readings, _ = w._decode(later, datetime.now(UTC), result)
    assert [x.time for x in readings] == [r("a", 4).time] and result.stale == 1
