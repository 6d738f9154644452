"""The alert lifecycle: turns a stream of per-reading scores into a few trustworthy alerts.

Pure state machine (no I/O, no clock of its own): the live scorer feeds it, and any replay of the
same scores (a test, a notebook) gets the same events. Per sensor there is at most one open
*anomaly* incident and at most one open *deadman* incident.

* **Open** (debounce): an anomaly incident opens when at least ``open_hits`` of the last
  ``open_window`` warm readings were judged anomalous, so one marginal reading is not an
  incident. A single reading scored at or above ``instant_score`` opens at once: a spike far
  outside the band is an incident by itself, and waiting for company would miss it.
* **Update** (rate-limited): only when the severity rises, or when the score has grown by at least
  ``update_min_score_delta`` since the last emitted event and ``update_min_interval_s`` has passed.
  Never once per reading.
* **Resolve** (hysteresis): the incident clears only after ``clear_readings`` consecutive readings
  scored below ``threshold * clear_ratio`` (a level *below* the opening threshold) and at least
  ``clear_after_s`` seconds since the last hot reading, so a score hovering around the threshold
  does not flap.
* **Deadman**: a sensor silent for longer than ``max(deadman_factor * interval, deadman_floor_s)``
  (its registered or learned reporting interval) gets a ``kind="deadman"`` alert, escalated to
  critical after ``deadman_critical_factor`` times that, and resolved by its next reading.

``event_id`` is ``core.wire.new_event_id`` of the sensor and the incident's opening time, so an
incident re-derived after a restart keeps its id; ``restore`` continues incidents loaded from
``anomaly_events`` so a restarted scorer neither re-opens nor duplicates them.

Anomaly times are the readings' own timestamps (deterministic, replayable); deadman times are the
caller's wall clock (``now``) against when readings were *received*, because silence is a fact about
the present, not about a device's clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

from core.wire import AlertState, AnomalyEvent, Severity, new_event_id

Kind = Literal["anomaly", "deadman"]
_SEVERITY_RANK: dict[str, int] = {"warning": 1, "critical": 2}
# Deadman incidents get ids from their own namespace so an anomaly and a deadman incident of one
# sensor can never share an id, even if they opened at the same instant.
_DEADMAN_ID_SUFFIX = "#deadman"


class ScoredPoint(Protocol):
    """What the state machine needs of a score (``core.scoring.Score`` has these fields)."""

    @property
    def sensor_id(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def value(self) -> float: ...
    @property
    def score(self) -> float: ...
    @property
    def is_anomaly(self) -> bool: ...
    @property
    def threshold(self) -> float: ...
    @property
    def expected(self) -> float | None: ...
    @property
    def lower(self) -> float | None: ...
    @property
    def upper(self) -> float | None: ...
    @property
    def detectors(self) -> Mapping[str, float]: ...
    @property
    def warm(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """Tunables of the alert lifecycle (defaults suit readings every 1-60 s)."""

    open_hits: int = 3
    open_window: int = 5
    instant_score: float | None = 0.999
    clear_ratio: float = 0.7
    clear_readings: int = 20
    clear_after_s: float = 0.0
    critical_score: float = 0.9
    update_min_score_delta: float = 0.1
    update_min_interval_s: float = 60.0
    deadman_factor: float = 5.0
    deadman_floor_s: float = 60.0
    deadman_critical_factor: float = 4.0

    def __post_init__(self) -> None:
        if not 1 <= self.open_hits <= self.open_window:
            raise ValueError("need 1 <= open_hits <= open_window")
        if not 0.0 < self.clear_ratio <= 1.0:
            raise ValueError("clear_ratio must be in (0, 1]")
        if self.clear_readings < 1:
            raise ValueError("clear_readings must be >= 1")
        if self.deadman_factor <= 0 or self.deadman_floor_s < 0 or self.deadman_critical_factor < 1:
            raise ValueError("deadman_factor > 0, deadman_floor_s >= 0, critical factor >= 1")

    def severity_of(self, score: float) -> Severity:
        return "critical" if score >= self.critical_score else "warning"

    def deadman_after_s(self, interval_s: float) -> float:
        return max(self.deadman_factor * interval_s, self.deadman_floor_s)


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An incident still open in ``anomaly_events``, handed to ``restore`` after a restart."""

    event_id: str
    sensor_id: str
    kind: Kind
    severity: Severity
    score: float
    opened_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class _Incident:
    event_id: str
    kind: Kind
    opened_at: datetime
    severity: Severity
    last_score: float  # score carried by the last emitted event (rate-limits updates)
    last_emit_at: datetime  # reading time (anomaly) or wall clock (deadman) of that event
    last_hot_at: datetime
    cool_count: int = 0


@dataclass(slots=True)
class _SensorState:
    hits: deque[tuple[datetime, bool]]
    anomaly: _Incident | None = None
    deadman: _Incident | None = None
    last_seen: datetime | None = None


@dataclass(slots=True)
class AlertMachine:
    """Per-sensor alert lifecycles. Not thread-safe: one owner (the scorer's scoring task)."""

    config: AlertConfig = field(default_factory=AlertConfig)
    _sensors: dict[str, _SensorState] = field(default_factory=dict)

    # ------------------------------------------------------------------ state access

    def _state(self, sensor_id: str) -> _SensorState:
        st = self._sensors.get(sensor_id)
        if st is None:
            st = _SensorState(hits=deque(maxlen=self.config.open_window))
            self._sensors[sensor_id] = st
        return st

    def open_incidents(self) -> dict[tuple[str, str], str]:
        """``{(sensor_id, kind): event_id}`` of every open incident."""
        out: dict[tuple[str, str], str] = {}
        for sid, st in self._sensors.items():
            for inc in (st.anomaly, st.deadman):
                if inc is not None:
                    out[(sid, inc.kind)] = inc.event_id
        return out

    def restore(self, alert: OpenAlert) -> None:
        """Continue an incident that was open when the previous process stopped."""
        inc = _Incident(
            alert.event_id,
            alert.kind,
            alert.opened_at,
            alert.severity,
            alert.score,
            alert.updated_at,
            alert.updated_at,
        )
        st = self._state(alert.sensor_id)
        if alert.kind == "deadman":
            st.deadman = inc
        else:
            st.anomaly = inc

    def mark_seen(self, sensor_id: str, received_at: datetime) -> None:
        """Record that a sensor reported (warm start); the deadman clock starts from here."""
        st = self._state(sensor_id)
        if st.last_seen is None or received_at > st.last_seen:
            st.last_seen = received_at

    # ------------------------------------------------------------------ readings

    def observe(
        self,
        point: ScoredPoint,
        *,
        model_version: str,
        now: datetime,
        received_at: datetime | None = None,
    ) -> list[AnomalyEvent]:
        """Feed one scored reading; return the events it causes (usually none)."""
        st = self._state(point.sensor_id)
        seen = received_at or point.time
        if st.last_seen is None or seen > st.last_seen:
            st.last_seen = seen
        hit = point.is_anomaly and point.warm
        if st.anomaly is None and st.deadman is None and not hit:
            # The common case, kept cheap: a quiet reading can open nothing. Every earlier
            # append left fewer than open_hits hits in the window (reaching open_hits opens an
            # incident and clears them), and a non-hit adds none.
            st.hits.append((point.time, False))
            return []
        events: list[AnomalyEvent] = []
        if st.deadman is not None:
            events.append(
                _resolve_event(st.deadman, point, model_version, now, score=st.deadman.last_score)
            )
            st.deadman = None
        if st.anomaly is None:
            st.hits.append((point.time, hit))
            opened = self._maybe_open(st, point, model_version, now)
            if opened is not None:
                events.append(opened)
        else:
            events.extend(self._advance(st, st.anomaly, point, model_version, now))
        return events

    def _maybe_open(
        self, st: _SensorState, point: ScoredPoint, model_version: str, now: datetime
    ) -> AnomalyEvent | None:
        hit_times = [t for t, hit in st.hits if hit]
        instant = self.config.instant_score
        confirmed = len(hit_times) >= self.config.open_hits
        if not (
            confirmed
            or (
                hit_times
                and instant is not None
                and point.score >= instant
                and point.is_anomaly
                and point.warm
            )
        ):
            return None
        # The incident starts at its first anomalous reading, not at the one that confirmed it.
        opened_at = hit_times[0]
        severity = self.config.severity_of(point.score)
        inc = _Incident(
            new_event_id(point.sensor_id, opened_at),
            "anomaly",
            opened_at,
            severity,
            point.score,
            point.time,
            point.time,
        )
        st.anomaly = inc
        st.hits.clear()
        return _point_event(inc, point, "open", model_version, now)

    def _advance(
        self,
        st: _SensorState,
        inc: _Incident,
        point: ScoredPoint,
        model_version: str,
        now: datetime,
    ) -> list[AnomalyEvent]:
        cfg = self.config
        if point.score >= point.threshold * cfg.clear_ratio:
            inc.cool_count = 0
            inc.last_hot_at = max(inc.last_hot_at, point.time)
        else:
            inc.cool_count += 1
            cooled_s = (point.time - inc.last_hot_at).total_seconds()
            if inc.cool_count >= cfg.clear_readings and cooled_s >= cfg.clear_after_s:
                st.anomaly = None
                st.hits.clear()
                return [_resolve_event(inc, point, model_version, now, score=point.score)]
            return []
        severity = cfg.severity_of(point.score)
        rises = _SEVERITY_RANK[severity] > _SEVERITY_RANK[inc.severity]
        grows = (
            point.score >= inc.last_score + cfg.update_min_score_delta
            and (point.time - inc.last_emit_at).total_seconds() >= cfg.update_min_interval_s
        )
        if not (rises or grows):
            return []
        inc.severity = severity if rises else inc.severity
        inc.last_score = point.score
        inc.last_emit_at = point.time
        return [_point_event(inc, point, "update", model_version, now)]

    # ------------------------------------------------------------------ silence

    def check_silence(
        self, now: datetime, interval_of: Callable[[str], float | None], *, model_version: str
    ) -> list[AnomalyEvent]:
        """Open or escalate deadman incidents of sensors silent for too long at ``now``.

        Sensors whose reporting interval is unknown (``interval_of`` returns None) are skipped:
        without an interval there is no honest notion of "late".
        """
        events: list[AnomalyEvent] = []
        for sid, st in self._sensors.items():
            if st.last_seen is None:
                continue
            interval = interval_of(sid)
            if interval is None or interval <= 0:
                continue
            after_s = self.config.deadman_after_s(interval)
            silent_s = (now - st.last_seen).total_seconds()
            if st.deadman is None and silent_s > after_s:
                opened_at = st.last_seen + timedelta(seconds=after_s)
                st.deadman = _Incident(
                    new_event_id(sid + _DEADMAN_ID_SUFFIX, opened_at),
                    "deadman",
                    opened_at,
                    "warning",
                    1.0,
                    now,
                    now,
                )
                events.append(_deadman_event(sid, st.deadman, "open", model_version, now))
            elif (
                st.deadman is not None
                and st.deadman.severity == "warning"
                and silent_s > after_s * self.config.deadman_critical_factor
            ):
                st.deadman.severity = "critical"
                st.deadman.last_emit_at = now
                events.append(_deadman_event(sid, st.deadman, "update", model_version, now))
        return events


# ---------------------------------------------------------------------- event builders


def _point_event(
    inc: _Incident,
    point: ScoredPoint,
    state: AlertState,
    model_version: str,
    now: datetime,
    *,
    score: float | None = None,
) -> AnomalyEvent:
    """An event about ``point``; a resolution carries the reading that ended the incident."""
    return AnomalyEvent(
        event_id=inc.event_id,
        sensor_id=point.sensor_id,
        timestamp=point.time,
        value=point.value,
        score=_clip(point.score if score is None else score),
        severity=inc.severity,
        state=state,
        kind=inc.kind,
        expected=point.expected,
        lower=point.lower,
        upper=point.upper,
        detectors={k: _clip(v) for k, v in point.detectors.items()},
        model_version=model_version,
        emitted_at=now,
        opened_at=inc.opened_at,
        resolved_at=point.time if state == "resolved" else None,
    )


def _resolve_event(
    inc: _Incident, point: ScoredPoint, model_version: str, now: datetime, *, score: float
) -> AnomalyEvent:
    return _point_event(inc, point, "resolved", model_version, now, score=score)


def _deadman_event(
    sensor_id: str, inc: _Incident, state: AlertState, model_version: str, now: datetime
) -> AnomalyEvent:
    return AnomalyEvent(
        event_id=inc.event_id,
        sensor_id=sensor_id,
        timestamp=now,
        value=None,
        score=1.0,
        severity=inc.severity,
        state=state,
        kind="deadman",
        model_version=model_version,
        emitted_at=now,
        opened_at=inc.opened_at,
    )


def _clip(x: float) -> float:
    return min(1.0, max(0.0, float(x)))
