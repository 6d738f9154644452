"""The dashboard stream's fan-out: coalescing, decimation, drop-oldest per client, bad messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.dashboard import StreamConfig, StreamHub, Subscriber, _thin, sse
from api.errors import ApiError
from core.settings import Settings
from core.wire import AnomalyEvent, Reading, encode_event, encode_reading, encode_readings

NOW = datetime.now(UTC).replace(microsecond=0)


def _hub(**config: Any) -> StreamHub:
    settings = Settings(database_url="postgresql://x@127.0.0.1/x", mqtt_url="mqtt://127.0.0.1:1")
    return StreamHub(settings, StreamConfig(**config))


def _reading(sensor: str, i: int, value: float = 1.0) -> Reading:
    return Reading(
        sensor_id=sensor,
        time=NOW - timedelta(seconds=100 - i * 0.1),
        value=value,
        sensor_type="temperature",
        unit="Cel",
    )


def _batches(sub: Subscriber) -> list[dict[str, Any]]:
    out = []
    while not sub.queue.empty():
        raw = sub.queue.get_nowait().decode()
        event, data = raw.strip().split("\n")
        assert event == "event: batch"
        out.append(json.loads(data.removeprefix("data: ")))
    return out


def test_readings_are_coalesced_into_one_batch_per_flush() -> None:
    hub = _hub()
    sub = hub.subscribe()
    for i in range(3):
        hub.offer("sensors/a/readings", encode_reading(_reading("a", i, float(i))))
    hub.offer("sensors/b/readings", encode_reading(_reading("b", 0, 7.5)))
    assert hub.flush() == 1
    [batch] = _batches(sub)
    assert [p[1] for p in batch["points"]["a"]] == [0.0, 1.0, 2.0]
    assert batch["latest"]["a"]["value"] == 2.0
    assert batch["latest"]["b"] == {
        "t": _reading("b", 0).time.timestamp(),
        "value": 7.5,
        "sensor_type": "temperature",
        "unit": "Cel",
    }
    assert batch["dropped"] == 0
    # Nothing new: no empty batch is sent.
    assert hub.flush() == 0
    assert sub.queue.empty()
    # The snapshot a new client gets still knows both sensors.
    assert set(hub.snapshot()["latest"]) == {"a", "b"}


def test_a_burst_is_thinned_keeping_the_latest_value() -> None:
    hub = _hub(max_points_per_sensor=10)
    sub = hub.subscribe()
    backlog = [_reading("a", i, float(i)) for i in range(500)]
    hub.offer("sensors/a/readings", encode_readings(backlog))
    hub.flush()
    [batch] = _batches(sub)
    values = [p[1] for p in batch["points"]["a"]]
    assert len(values) == 10
    assert values[0] == 0.0 and values[-1] == 499.0
    assert values == sorted(values)
    assert hub.stats.decimated_points == 490
    assert hub.stats.readings == 500


def test_a_slow_client_loses_its_oldest_batches_and_is_told() -> None:
    hub = _hub(client_queue_batches=2)
    slow, fast = hub.subscribe(), hub.subscribe()
    for i in range(5):
        hub.offer("sensors/a/readings", encode_reading(_reading("a", i, float(i))))
        hub.flush()
        # The fast client reads every batch as it comes.
        assert len(_batches(fast)) == 1
    kept = _batches(slow)
    assert [b["points"]["a"][0][1] for b in kept] == [3.0, 4.0]
    assert kept[-1]["dropped"] == 3
    assert slow.dropped == 3 and fast.dropped == 0
    assert hub.stats.dropped_batches == 3


def test_alerts_are_forwarded_and_bad_messages_counted_not_raised() -> None:
    hub = _hub()
    sub = hub.subscribe()
    event = AnomalyEvent(
        event_id="e1",
        sensor_id="a",
        timestamp=NOW,
        value=93.1,
        score=0.97,
        severity="critical",
        state="open",
        expected=71.4,
        lower=68.9,
        upper=73.8,
        detectors={"forecast_residual": 0.99},
        model_version="anomaly_detector:v1",
        emitted_at=NOW,
    )
    hub.offer("alerts/a", encode_event(event))
    hub.offer("sensors/a/readings", b"{not json")
    hub.offer("sensors/a/readings", b'{"sensor_id":"b","value":1,"timestamp":1}')
    hub.offer("alerts/a", b'{"event_id":"x"}')
    hub.offer("other/topic", b"{}")
    hub.flush()
    [batch] = _batches(sub)
    [alert] = batch["alerts"]
    assert alert["event_id"] == "e1" and alert["detectors"] == {"forecast_residual": 0.99}
    assert alert["expected"] == 71.4 and alert["state"] == "open"
    assert hub.stats.rejected == {
        "malformed_json": 1,
        "sensor_mismatch": 1,
        "invalid_event": 1,
        "unknown_topic": 1,
    }
    assert hub.stats.messages == 5


def test_senml_packs_are_streamed_like_readings() -> None:
    hub = _hub()
    sub = hub.subscribe()
    pack = [{"bn": "a", "bt": NOW.timestamp() - 5, "bu": "Cel", "v": 20.5}, {"t": 1, "v": 21.0}]
    hub.offer("sensors/a/senml", json.dumps(pack).encode())
    hub.flush()
    [batch] = _batches(sub)
    assert [p[1] for p in batch["points"]["a"]] == [20.5, 21.0]
    assert batch["latest"]["a"]["unit"] == "Cel"


def test_clients_are_limited_and_unsubscribe_frees_a_slot() -> None:
    hub = _hub(max_clients=2)
    first, _second = hub.subscribe(), hub.subscribe()
    with pytest.raises(ApiError) as err:
        hub.subscribe()
    assert err.value.status == 503 and hub.stats.refused_clients == 1
    hub.unsubscribe(first)
    assert hub.clients == 1
    hub.subscribe()
    assert hub.clients == 2


def test_thin_keeps_ends_and_order() -> None:
    pts = [(float(i), float(i)) for i in range(101)]
    assert _thin(pts, 200) == pts
    thinned = _thin(pts, 5)
    assert thinned == [(0.0, 0.0), (25.0, 25.0), (50.0, 50.0), (75.0, 75.0), (100.0, 100.0)]
    assert _thin(pts, 1) == [(100.0, 100.0)]


def test_sse_framing() -> None:
    assert sse("batch", '{"a":1}') == b'event: batch\ndata: {"a":1}\n\n'


def test_closing_ends_every_stream_and_refuses_new_ones() -> None:
    hub = _hub(client_queue_batches=1)
    sub = hub.subscribe()
    hub.offer("sensors/a/readings", encode_reading(_reading("a", 0)))
    hub.flush()
    hub.close_streams()
    # The full queue made room: the close marker is what the stream reads next.
    assert sub.queue.get_nowait() == b""
    assert sub.dropped == 1
    with pytest.raises(ApiError) as err:
        hub.subscribe()
    assert err.value.status == 503 and err.value.code == "shutting_down"
