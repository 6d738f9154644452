"""The scorer across its own outages: catch-up from the database after a reconnect, and deadman
alerts for registered sensors silent since before the warm-start window (real Mosquitto, real
PostgreSQL, the real ``python -m scorer`` process)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from core.wire import Reading
from tests.integration.scorer_harness import (
    AlertListener,
    Publisher,
    ScorerProcess,
    event_rows,
    simulate,
    store_history,
)
from tests.integration.test_scorer_service import (
    HISTORY_TICKS,
    replay,
    shifted,
    wait_quiet,
)
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

SCORED = "sensorpipe_scorer_readings_scored_total"
CATCHUPS = "sensorpipe_scorer_catchups_total"


def publish(url: str, readings: list[Reading]) -> None:
    pub = Publisher(url)
    try:
        pub.send(readings)
    finally:
        pub.close()


def test_readings_stored_while_the_broker_was_down_are_scored_once_and_alert(
    scorer_factory: Callable[..., ScorerProcess],
    mqtt: MosquittoServer,
    db_url: str,
    models_dir: Path,
) -> None:
    ticks = HISTORY_TICKS + 200
    sim, readings = simulate("cu", ticks)
    target = readings[0].sensor_id
    values = [r.value for r in readings if r.sensor_id == target]
    # The incident happens entirely while the scorer is cut off from the broker.
    t_down, t_up = sim.time_of(HISTORY_TICKS + 40), sim.time_of(HISTORY_TICKS + 120)
    on, off = sim.time_of(HISTORY_TICKS + 60), sim.time_of(HISTORY_TICKS + 90)
    readings = shifted(readings, target, on, off, 3.0 * (max(values) - min(values)))
    live_from = sim.time_of(HISTORY_TICKS)
    history = [r for r in readings if r.time < live_from]
    before = [r for r in readings if live_from <= r.time < t_down]
    gap = [r for r in readings if t_down <= r.time < t_up]
    overlap = [r for r in gap if r.time >= t_up - timedelta(seconds=5)]
    after = [r for r in readings if r.time >= t_up]
    store_history(db_url, history)

    proc = scorer_factory()
    proc.wait_metric(CATCHUPS, 1)  # the first connect's catch-up: nothing missed yet
    publish(mqtt.url, before)
    store_history(db_url, before)  # as the ingestor would
    proc.wait_metric(SCORED, len(before))

    # The broker goes away; the ingestor (its own persistent session) keeps storing readings.
    mqtt.stop()
    store_history(db_url, gap)
    mqtt.start()
    proc.wait_metric(CATCHUPS, 2, timeout_s=60)
    proc.wait_metric(SCORED, len(before) + len(gap))
    # Back live: the device re-sends the tail of the gap (already caught up) and goes on.
    publish(mqtt.url, overlap + after)
    store_history(db_url, after)
    live = before + gap + after
    proc.wait_metric(SCORED, len(live))
    proc.wait_metric("sensorpipe_scorer_skipped_total", len(overlap))

    # Every stored reading after the warm start scored exactly once, none twice.
    assert proc.metric(SCORED) == len(live)
    assert proc.metric("sensorpipe_scorer_skipped_total", 'reason="caught_up"') == len(overlap)
    assert proc.metric("sensorpipe_scorer_skipped_total", 'reason="stale"') == 0
    assert proc.metric("sensorpipe_scorer_catchup_readings_total") == len(gap)
    assert proc.metric(CATCHUPS, 'result="ok"') == 2

    # The incident of the outage was alerted, and the alerts are those of an uninterrupted run.
    want = {e.event_id for e in replay(models_dir, history, live) if e.state == "open"}
    proc.wait_metric("sensorpipe_scorer_alerts_opened_total", len(want))
    assert proc.metric("sensorpipe_scorer_alerts_opened_total") == len(want)
    assert {str(r["event_id"]) for r in event_rows(db_url)} == want
    opened = [r["opened_at"] for r in event_rows(db_url) if r["sensor_id"] == target]
    assert any(isinstance(t, datetime) and on <= t <= off for t in opened), opened


def test_registered_sensor_silent_for_days_gets_a_deadman_alert_after_restart(
    scorer_factory: Callable[..., ScorerProcess],
    mqtt: MosquittoServer,
    db_url: str,
) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sensors (sensor_id, expected_interval_s, last_seen_at) VALUES "
            "('old-1', 0.1, %(two_days)s), ('gone-1', 0.1, %(month)s), ('never-1', 0.1, NULL)",
            {"two_days": now - timedelta(days=2), "month": now - timedelta(days=30)},
        )
        # No last_seen_at, but a stored reading (from before the 6 h window) shows it was active.
        conn.execute("INSERT INTO sensors (sensor_id, expected_interval_s) VALUES ('old-2', 0.1)")
    store_history(db_url, [Reading(sensor_id="old-2", time=now - timedelta(hours=9), value=1.0)])
    listener = AlertListener(mqtt.url)
    try:
        proc = scorer_factory(
            ALERT_DEADMAN_FLOOR_S="1.0", ALERT_DEADMAN_FACTOR="3", SCORER_DEADMAN_CHECK_S="0.2"
        )
        proc.wait_metric("sensorpipe_scorer_alerts_opened_total", 2, timeout_s=30)
        wait_quiet(proc, listener)
        opened = sorted((e.sensor_id, e.kind) for e in listener.events() if e.state == "open")
        # gone-1 is past SCORER_DEADMAN_MAX_SILENCE_S (7 days), never-1 never reported.
        assert opened == [("old-1", "deadman"), ("old-2", "deadman")]
        assert sorted((r["sensor_id"], r["kind"]) for r in event_rows(db_url)) == [
            ("old-1", "deadman"),
            ("old-2", "deadman"),
        ]
        assert proc.metric("sensorpipe_scorer_alerts_opened_total") == 2
    finally:
        listener.close()
