"""The scorer's catch-up rule and deadman watch list, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.topics import TopicKind
from core.wire import encode_reading
from scorer.storage import WarmStart
from scorer.worker import BatchResult, Inbound
from tests.unit.test_scorer_worker import NOW, make_worker, r


def test_live_copies_of_caught_up_readings_are_skipped_and_late_ones_of_others_scored() -> None:
    w = make_worker()
    w._last_time["a"] = r("a", 1).time
    stored = [r("a", 2), r("a", 3)]
    fresh, arrivals = w._causal([(x, 10.0) for x in stored], BatchResult())
    w._caught_up.update((x.sensor_id, x.time) for x in fresh)
    assert fresh == stored and arrivals == [10.0, 10.0]

    live: list[Inbound] = [
        (11.0, TopicKind.READINGS, "a", encode_reading(r("a", 3))),  # covered by the catch-up
        (11.0, TopicKind.READINGS, "a", encode_reading(r("a", 2.5))),  # late, never scored
        (11.0, TopicKind.READINGS, "a", encode_reading(r("a", 4))),
        # b was not in the catch-up: its reading is older than a's, and still scored.
        (11.0, TopicKind.READINGS, "b", encode_reading(r("b", 0.5))),
    ]
    result = BatchResult()
    readings, _ = w._decode(live, datetime.now(UTC), result)
    assert [(x.sensor_id, x.time) for x in readings] == [
        ("b", r("b", 0.5).time),
        ("a", r("a", 4).time),
    ]
    assert (result.caught_up, result.stale) == (1, 1)


def test_deadman_watches_recent_and_registered_sensors_within_the_silence_bound() -> None:
    w = make_worker(scorer_deadman_max_silence_s=86400.0)
    ws = WarmStart(
        last_received={"warm": NOW},
        last_active={
            "warm": NOW,
            "quiet-1h": NOW - timedelta(hours=1),
            "quiet-20h": NOW - timedelta(hours=20),
            "quiet-2d": NOW - timedelta(days=2),
        },
    )
    assert w._deadman_watch(ws, NOW) == {"warm", "quiet-1h", "quiet-20h"}
