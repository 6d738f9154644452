"""How the scorer splits a delivery of alert events into upsert statements (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.wire import AnomalyEvent, new_event_id
from scorer.storage import _columns, _rounds

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def event(sid: str, state: str = "open", minutes: int = 0) -> AnomalyEvent:
    t = T0 + timedelta(minutes=minutes)
    return AnomalyEvent(
        event_id=new_event_id(sid, T0),
        sensor_id=sid,
        timestamp=t,
        value=1.0,
        score=0.95,
        severity="critical",
        state=state,
        model_version="anomaly_detector:v1",
        emitted_at=t,
        opened_at=T0,
        resolved_at=t if state == "resolved" else None,
    )


def test_distinct_events_go_in_one_statement() -> None:
    events = [event("a"), event("b"), event("c")]
    assert _rounds(events) == [events]


def test_repeats_of_an_event_go_to_later_statements_in_order() -> None:
    # ON CONFLICT DO UPDATE cannot touch one row twice in a statement: an incident opened and
    # resolved within one delivery takes two, applied in the order they were emitted.
    a_open, a_update, a_resolved = event("a"), event("a", "update", 1), event("a", "resolved", 2)
    b = event("b")
    rounds = _rounds([a_open, b, a_update, a_resolved])
    assert rounds == [[a_open, b], [a_update], [a_resolved]]
    for chunk in rounds:
        assert len({e.event_id for e in chunk}) == len(chunk)


def test_columns_are_the_rows_transposed() -> None:
    cols = _columns([event("a"), event("b", "resolved", 3)])
    assert cols["sensor_id"] == ["a", "b"]
    assert cols["state"] == ["open", "resolved"]
    assert cols["resolved_at"] == [None, T0 + timedelta(minutes=3)]
    assert len({len(v) for v in cols.values()}) == 1
