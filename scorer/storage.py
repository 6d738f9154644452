"""The scorer's database side: warm-start reads and the exactly-once alert upsert.

psycopg errors become ``StorageError`` here and nowhere above.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from core.errors import StorageError
from core.scoring.alerts import Kind, OpenAlert
from core.topics import shard_of
from core.wire import AnomalyEvent, Reading, Severity
from scorer import queries

log = logging.getLogger(__name__)

STORE_CONNECT_TIMEOUT_S = 5.0


@dataclass(slots=True)
class WarmStart:
    """What a starting scorer needs from the database for its shard."""

    histories: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    last_received: dict[str, datetime] = field(default_factory=dict)
    intervals_s: dict[str, float] = field(default_factory=dict)
    # Every registered sensor of the shard with its last activity, however old (deadman).
    last_active: dict[str, datetime] = field(default_factory=dict)
    open_alerts: list[OpenAlert] = field(default_factory=list)

    @property
    def readings(self) -> int:
        return sum(len(h) for h in self.histories.values())


@dataclass(slots=True)
class CatchUp:
    """Stored readings the scorer missed while disconnected, in time order."""

    readings: list[Reading] = field(default_factory=list)
    received: list[float] = field(default_factory=list)  # received_at, epoch seconds
    truncated: bool = False  # the max-readings bound was hit (older readings left out)


def in_shard(sensor_id: str, shard: tuple[int, int]) -> bool:
    index, count = shard
    return count == 1 or shard_of(sensor_id, count) == index


async def load_warm_start(
    pool: AsyncConnectionPool,
    *,
    shard: tuple[int, int],
    now: datetime,
    window_s: float,
    max_readings: int,
) -> WarmStart:
    """Recent history of every sensor of the shard (bounded per sensor) and its open alerts."""
    ws = WarmStart()
    try:
        async with pool.connection() as conn:
            ids = await _load_registry(conn, ws, shard)
            if ids and max_readings > 0:
                await _load_histories(
                    conn, ws, ids, now - timedelta(seconds=window_s), max_readings
                )
            cur = await conn.execute(queries.OPEN_ALERTS)
            for eid, sid, kind, severity, score, opened_at, updated_at in await cur.fetchall():
                if in_shard(sid, shard):
                    ws.open_alerts.append(
                        OpenAlert(
                            eid,
                            sid,
                            _kind(kind),
                            _severity(severity),
                            float(score),
                            opened_at,
                            updated_at,
                        )
                    )
    except psycopg.Error as exc:
        raise StorageError(f"warm start failed: {exc}") from exc
    return ws


async def _load_registry(
    conn: psycopg.AsyncConnection[Any], ws: WarmStart, shard: tuple[int, int]
) -> list[str]:
    """The shard's registered sensors, with their intervals and last activity, into ``ws``."""
    cur = await conn.execute(queries.SENSORS)
    ids: list[str] = []
    for sid, interval, last_active in await cur.fetchall():
        if in_shard(sid, shard):
            ids.append(sid)
            if interval is not None:
                ws.intervals_s[sid] = float(interval)
            if last_active is not None:
                ws.last_active[sid] = last_active
    return ids


async def load_catch_up(
    pool: AsyncConnectionPool,
    *,
    shard: tuple[int, int],
    marks: Mapping[str, datetime],
    floor: datetime,
    max_readings: int,
) -> CatchUp:
    """Stored readings of the shard newer than each sensor's mark (never older than ``floor``).

    ``marks`` holds the last scored reading time per sensor; sensors without one (or with an
    older one) start at ``floor``. At most ``max_readings``, the newest ones, oldest first.
    """
    out = CatchUp()
    if max_readings <= 0:
        return out
    try:
        # Live readings queue while this runs: a database that is down costs a short wait and a
        # skipped catch-up, not the pool's 30 s default.
        async with pool.connection(timeout=STORE_CONNECT_TIMEOUT_S) as conn:
            ids = await _load_registry(conn, WarmStart(), shard)
            # Also sensors scored live but not (yet) registered: the ingestor may be behind.
            ids = sorted(set(ids).union(s for s in marks if in_shard(s, shard)))
            since = [max(marks.get(sid, floor), floor) for sid in ids]
            cur = await conn.execute(
                queries.CATCH_UP_READINGS,
                {"sensor_ids": ids, "since": since, "limit": max_readings},
            )
            for sid, t, value, received_at in await cur.fetchall():
                if math.isfinite(value):  # the wire format never lets NaN in; a manual row might
                    out.readings.append(Reading(sensor_id=sid, time=t, value=float(value)))
                    out.received.append(received_at.timestamp())
    except psycopg.Error as exc:
        raise StorageError(f"catch-up read failed: {exc}") from exc
    out.truncated = len(out.readings) >= max_readings
    return out


async def _load_histories(
    conn: psycopg.AsyncConnection[Any],
    ws: WarmStart,
    ids: list[str],
    since: datetime,
    max_readings: int,
) -> None:
    histories: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    async with conn.cursor() as cur:
        await cur.execute(
            queries.WARM_START_READINGS, {"sensor_ids": ids, "since": since, "limit": max_readings}
        )
        async for sid, t, value, received_at in cur:
            histories[sid].append((t, float(value)))
            last = ws.last_received.get(sid)
            if last is None or received_at > last:
                ws.last_received[sid] = received_at
    ws.histories = dict(histories)


def _kind(v: str) -> Kind:
    return "deadman" if v == "deadman" else "anomaly"


def _severity(v: str) -> Severity:
    return "critical" if v == "critical" else "warning"


def event_row(e: AnomalyEvent) -> dict[str, Any]:
    """The ``anomaly_events`` row of an event; ``update`` is stored as ``open``."""
    return {
        "event_id": e.event_id,
        "sensor_id": e.sensor_id,
        "kind": e.kind,
        "state": "resolved" if e.state == "resolved" else "open",
        "severity": e.severity,
        "score": e.score,
        "value": e.value,
        "expected": e.expected,
        "lower": e.lower,
        "upper": e.upper,
        "detectors": Jsonb(e.detectors),
        "model_version": e.model_version,
        "opened_at": e.opened_at or e.timestamp,
        "updated_at": e.timestamp,
        "resolved_at": e.resolved_at,
        "emitted_at": e.emitted_at,
    }


async def store_events(pool: AsyncConnectionPool, events: list[AnomalyEvent]) -> None:
    """Upsert events, committed when this returns; registers unknown sensors for the foreign key.

    One autocommitted statement per round of distinct event ids (nearly always one): each is
    atomic on its own, and a failure part-way is safe to retry whole, since the upsert of an
    event already stored changes nothing (scores and times only grow, resolved stays resolved).
    """
    if not events:
        return
    try:
        # A short wait for a connection: the caller retries with backoff, and a failed attempt
        # is counted and logged rather than hidden in a 30 s pool wait.
        async with pool.connection(timeout=STORE_CONNECT_TIMEOUT_S) as conn:
            await conn.set_autocommit(True)  # client-side only: no round trip
            try:
                for chunk in _rounds(events):
                    await conn.execute(queries.UPSERT_EVENTS, _columns(chunk))
            finally:
                if not conn.broken:  # (a broken one is discarded by the pool)
                    await conn.set_autocommit(False)  # how the pool's other users expect it
    except psycopg.Error as exc:
        raise StorageError(f"storing {len(events)} alert event(s) failed: {exc}") from exc


def _rounds(events: list[AnomalyEvent]) -> list[list[AnomalyEvent]]:
    """Split events so no round repeats an event id, keeping each id's events in order."""
    rounds: list[list[AnomalyEvent]] = []
    seen: dict[str, int] = {}
    for e in events:
        k = seen.get(e.event_id, 0)
        seen[e.event_id] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(e)
    return rounds


def _columns(events: list[AnomalyEvent]) -> dict[str, list[Any]]:
    """The rows of ``events`` as one array per column (the parameters of ``UPSERT_EVENTS``)."""
    rows = [event_row(e) for e in events]
    return {key: [r[key] for r in rows] for key in rows[0]}
