"""The alert upsert against a real PostgreSQL: one incident is one row, whatever the delivery."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core.db import async_pool
from core.wire import AnomalyEvent, new_event_id
from scorer.storage import store_events

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def event(sid: str, state: str, minutes: int, score: float) -> AnomalyEvent:
    t = T0 + timedelta(minutes=minutes)
    return AnomalyEvent(
        event_id=new_event_id(sid, T0),
        sensor_id=sid,
        timestamp=t,
        value=score * 10,
        score=score,
        severity="critical" if score >= 0.9 else "warning",
        state=state,
        expected=None,
        model_version="anomaly_detector:v1",
        emitted_at=t,
        opened_at=T0,
        resolved_at=t if state == "resolved" else None,
    )


def store(db_url: str, events: list[AnomalyEvent]) -> None:
    async def run() -> None:
        async with async_pool(db_url, min_size=1, max_size=1) as pool:
            await store_events(pool, events)
            # The connection goes back to the pool as its other users expect it.
            async with pool.connection() as conn:
                assert not conn.autocommit

    asyncio.run(run())


def rows(db_url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT sensor_id, state, severity, score, value, resolved_at FROM anomaly_events "
            "ORDER BY sensor_id"
        ).fetchall()


def test_one_delivery_with_an_incident_opened_and_resolved_stores_one_row(db_url: str) -> None:
    # Sensors unknown to the registry are registered for the foreign key; repeats of one
    # incident within a delivery are applied in order (the row keeps the peak, resolved sticks).
    store(
        db_url,
        [
            event("never-registered", "open", 0, 0.8),
            event("other", "open", 0, 0.7),
            event("never-registered", "update", 1, 0.95),
            event("never-registered", "resolved", 2, 0.5),
        ],
    )
    assert rows(db_url) == [
        ("never-registered", "resolved", "critical", 0.95, 9.5, T0 + timedelta(minutes=2)),
        ("other", "open", "warning", 0.7, 7.0, None),
    ]


def test_a_redelivered_open_does_not_reopen_a_resolved_incident(db_url: str) -> None:
    store(db_url, [event("s", "open", 0, 0.8), event("s", "resolved", 2, 0.5)])
    store(db_url, [event("s", "open", 0, 0.8)])
    assert [r[:2] for r in rows(db_url)] == [("s", "resolved")]
