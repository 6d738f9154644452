"""The alert state machine: debounce, hysteresis, severity, rate-limited updates, deadman, ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from core.scoring.alerts import AlertConfig, AlertMachine, OpenAlert
from core.wire import AnomalyEvent, new_event_id

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MV = "anomaly_detector:v1"


@dataclass(frozen=True)
class Point:
    sensor_id: str
    time: datetime
    value: float
    score: float
    threshold: float = 0.5
    expected: float | None = 20.0
    lower: float | None = 19.0
    upper: float | None = 21.0
    detectors: dict[str, float] = field(default_factory=lambda: {"forecast_residual": 0.1})
    warm: bool = True

    @property
    def is_anomaly(self) -> bool:
        return self.score >= self.threshold


def feed(
    m: AlertMachine,
    scores: list[float],
    *,
    sid: str = "s1",
    start: int = 0,
    step_s: float = 1.0,
    warm: bool = True,
) -> list[AnomalyEvent]:
    out: list[AnomalyEvent] = []
    for i, s in enumerate(scores, start=start):
        p = Point(sid, T0 + timedelta(seconds=i * step_s), 20.0 + 10 * s, s, warm=warm)
        out.extend(m.observe(p, model_version=MV, now=NOW))
    return out


def test_isolated_spikes_do_not_open_an_incident() -> None:
    m = AlertMachine(AlertConfig(open_hits=3, open_window=5))
    # Two hits in every window of five: never three.
    events = feed(m, [0.9, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.9, 0.1] * 3)
    assert events == []
    assert m.open_incidents() == {}


def test_n_of_m_opens_once_with_id_from_the_first_hit() -> None:
    m = AlertMachine(AlertConfig(open_hits=3, open_window=5))
    events = feed(m, [0.1, 0.8, 0.2, 0.8, 0.8, 0.8, 0.8, 0.8])
    assert [e.state for e in events] == ["open"]
    e = events[0]
    first_hit = T0 + timedelta(seconds=1)
    assert e.opened_at == first_hit
    assert e.timestamp == T0 + timedelta(seconds=4)  # the reading that confirmed it
    assert e.event_id == new_event_id("s1", first_hit)
    assert e.kind == "anomaly" and e.severity == "warning" and e.model_version == MV
    assert e.expected == 20.0 and e.lower == 19.0 and e.upper == 21.0
    assert m.open_incidents() == {("s1", "anomaly"): e.event_id}


def test_a_single_extreme_reading_opens_at_once_unless_disabled() -> None:
    m = AlertMachine(AlertConfig(open_hits=3, open_window=5, instant_score=0.95, clear_readings=5))
    events = feed(m, [0.1, 0.97, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert [(e.state, e.timestamp.second) for e in events] == [("open", 1), ("resolved", 6)]
    assert events[0].opened_at == T0 + timedelta(seconds=1)
    off = AlertMachine(
        AlertConfig(open_hits=3, open_window=5, instant_score=None, clear_readings=5)
    )
    assert feed(off, [0.1, 0.97, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]) == []


def test_cold_scores_never_count_towards_opening() -> None:
    m = AlertMachine(AlertConfig(open_hits=2, open_window=3))
    assert feed(m, [0.99] * 10, warm=False) == []


def test_hysteresis_needs_k_readings_below_the_lower_level() -> None:
    cfg = AlertConfig(open_hits=2, open_window=2, clear_ratio=0.6, clear_readings=3)
    m = AlertMachine(cfg)
    # threshold 0.5 → clear level 0.3: scores of 0.4 are "not anomalous" but still not clear.
    events = feed(m, [0.7, 0.7] + [0.4] * 20 + [0.2, 0.2, 0.7, 0.2, 0.2])
    assert [e.state for e in events] == ["open"]
    events = feed(m, [0.2], start=100)
    assert [e.state for e in events] == ["resolved"]
    assert events[0].resolved_at == T0 + timedelta(seconds=100)
    assert m.open_incidents() == {}


def test_clear_after_seconds_holds_the_incident_open() -> None:
    cfg = AlertConfig(open_hits=1, open_window=1, clear_readings=2, clear_after_s=30.0)
    m = AlertMachine(cfg)
    assert [e.state for e in feed(m, [0.8])] == ["open"]
    assert feed(m, [0.1] * 29, start=1) == []  # 29 s after the last hot reading
    assert [e.state for e in feed(m, [0.1], start=30)] == ["resolved"]


def test_severity_rise_updates_immediately_and_never_per_reading() -> None:
    cfg = AlertConfig(open_hits=1, open_window=1, critical_score=0.9, update_min_interval_s=3600)
    m = AlertMachine(cfg)
    events = feed(m, [0.6, 0.6, 0.65, 0.95, 0.96, 0.99, 0.97] + [0.95] * 50)
    assert [(e.state, e.severity) for e in events] == [("open", "warning"), ("update", "critical")]
    assert len({e.event_id for e in events}) == 1


def test_material_score_growth_updates_at_most_once_per_interval() -> None:
    cfg = AlertConfig(
        open_hits=1,
        open_window=1,
        critical_score=0.99,
        update_min_score_delta=0.1,
        update_min_interval_s=10.0,
    )
    m = AlertMachine(cfg)
    scores = [0.55] + [0.7] * 9 + [0.7] + [0.75] * 10 + [0.85] * 15
    events = feed(m, scores)
    # 0.7 at t=10 has grown by 0.15 ≥ 0.1 after 10 s → update; 0.75 is < 0.7 + 0.1 → nothing;
    # 0.85 at t=21 is +0.15 but only 11 s… ≥ 10 s → update.
    assert [(e.state, e.timestamp.second) for e in events] == [
        ("open", 0),
        ("update", 10),
        ("update", 21),
    ]
    assert all(e.severity == "warning" for e in events)


def test_reopening_after_resolution_gets_a_new_id() -> None:
    cfg = AlertConfig(open_hits=2, open_window=3, clear_readings=2)
    m = AlertMachine(cfg)
    events = feed(m, [0.8, 0.8, 0.1, 0.1, 0.1, 0.8, 0.8, 0.1, 0.1])
    assert [e.state for e in events] == ["open", "resolved", "open", "resolved"]
    assert events[0].event_id == events[1].event_id
    assert events[2].event_id == events[3].event_id != events[0].event_id


def test_sensors_are_independent() -> None:
    m = AlertMachine(AlertConfig(open_hits=2, open_window=2))
    events = feed(m, [0.8, 0.1, 0.8], sid="a") + feed(m, [0.8, 0.8], sid="b")
    assert [(e.sensor_id, e.state) for e in events] == [("b", "open")]


def test_the_same_stream_gives_the_same_events() -> None:
    scores = [0.1, 0.7, 0.9, 0.95, 0.6, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.8, 0.8, 0.8]
    a = feed(AlertMachine(), scores)
    b = feed(AlertMachine(), scores)
    assert a == b and a


def test_restored_incident_continues_with_its_id_and_does_not_reopen() -> None:
    cfg = AlertConfig(open_hits=2, open_window=2, clear_readings=2)
    first = AlertMachine(cfg)
    opened = feed(first, [0.9, 0.9, 0.9])
    assert [e.state for e in opened] == ["open"]
    e = opened[0]
    # A new process: the row from anomaly_events is handed back.
    second = AlertMachine(cfg)
    assert e.opened_at is not None
    second.restore(
        OpenAlert(e.event_id, "s1", "anomaly", e.severity, e.score, e.opened_at, e.timestamp)
    )
    events = feed(second, [0.9, 0.9, 0.9, 0.1, 0.1], start=3)
    assert [(x.state, x.event_id) for x in events] == [("resolved", e.event_id)]


def test_deadman_opens_escalates_and_resolves_on_the_next_reading() -> None:
    cfg = AlertConfig(deadman_factor=3.0, deadman_floor_s=10.0, deadman_critical_factor=2.0)
    m = AlertMachine(cfg)
    m.mark_seen("s1", NOW)
    m.mark_seen("unknown", NOW)

    def interval(sid: str) -> float | None:
        return 5.0 if sid == "s1" else None

    # timeout = max(3 × 5, 10) = 15 s
    assert m.check_silence(NOW + timedelta(seconds=15), interval, model_version=MV) == []
    opened = m.check_silence(NOW + timedelta(seconds=16), interval, model_version=MV)
    assert [(e.sensor_id, e.kind, e.state, e.severity) for e in opened] == [
        ("s1", "deadman", "open", "warning")
    ]
    assert opened[0].opened_at == NOW + timedelta(seconds=15)
    assert opened[0].value is None and opened[0].score == 1.0
    assert m.check_silence(NOW + timedelta(seconds=20), interval, model_version=MV) == []
    escalated = m.check_silence(NOW + timedelta(seconds=31), interval, model_version=MV)
    assert [(e.state, e.severity) for e in escalated] == [("update", "critical")]
    assert m.check_silence(NOW + timedelta(seconds=60), interval, model_version=MV) == []
    back = Point("s1", NOW + timedelta(seconds=61), 20.0, 0.1)
    resolved = m.observe(back, model_version=MV, now=NOW + timedelta(seconds=61))
    assert [(e.kind, e.state, e.event_id) for e in resolved] == [
        ("deadman", "resolved", opened[0].event_id)
    ]
    assert m.open_incidents() == {}


def test_deadman_floor_applies_to_fast_sensors_and_ids_do_not_collide() -> None:
    m = AlertMachine(AlertConfig(deadman_factor=5.0, deadman_floor_s=60.0))
    m.mark_seen("s1", NOW)
    assert m.check_silence(NOW + timedelta(seconds=59), lambda _: 0.1, model_version=MV) == []
    [e] = m.check_silence(NOW + timedelta(seconds=61), lambda _: 0.1, model_version=MV)
    assert e.opened_at == NOW + timedelta(seconds=60)
    assert e.event_id != new_event_id("s1", NOW + timedelta(seconds=60))


def test_readings_keep_the_deadman_clock_fresh() -> None:
    m = AlertMachine(AlertConfig(deadman_factor=2.0, deadman_floor_s=0.0))
    for i in range(10):
        t = NOW + timedelta(seconds=i)
        m.observe(Point("s1", t, 20.0, 0.1), model_version=MV, now=t, received_at=t)
        assert m.check_silence(t + timedelta(seconds=1.5), lambda _: 1.0, model_version=MV) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"open_hits": 0},
        {"open_hits": 4, "open_window": 3},
        {"clear_ratio": 0.0},
        {"clear_readings": 0},
        {"deadman_factor": 0.0},
        {"deadman_critical_factor": 0.5},
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AlertConfig(**kwargs)  # type: ignore[arg-type]
