"""The scorer service end to end: simulator → Mosquitto → ``python -m scorer`` → alerts on MQTT
and rows in ``anomaly_events`` (real broker, real PostgreSQL, the real process)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from core.wire import AnomalyEvent, Reading
from simulators import Incident, Simulator, make_sensors
from tests.integration.scorer_harness import (
    ALERT_ENV,
    AlertListener,
    Publisher,
    ScorerProcess,
    event_rows,
    simulate,
    store_history,
)
from tests.servers import MosquittoServer, PgServer

pytestmark = pytest.mark.integration

HISTORY_TICKS = 300  # stored before the scorer starts: warm start covers the 100-reading warm-up
# Budgets of the incident test. The service itself is held to exact parity with the library;
# these figures are the detector's (core.scoring) quality on this seed, stated so a regression
# shows: at least 80 % of incidents alerted, 80 % of incidents with exactly one alert (a long level
# shift the detector adapts to can come back as a second alert when it ends), and at most one
# false alert per 1,000 live readings.
MIN_RECALL = 0.8
MIN_SINGLE = 0.8
FALSE_ALERTS_PER_1000 = 1.0
GRACE = timedelta(seconds=35)


@pytest.fixture
def listener(mqtt: MosquittoServer) -> Iterator[AlertListener]:
    lis = AlertListener(mqtt.url)
    yield lis
    lis.close()


@pytest.fixture
def publisher(mqtt: MosquittoServer) -> Iterator[Publisher]:
    pub = Publisher(mqtt.url)
    yield pub
    pub.close()


def intervals(events: list[AnomalyEvent]) -> dict[str, tuple[str, datetime, datetime | None]]:
    """``event_id → (sensor_id, opened_at, resolved_at or None)`` of the anomaly incidents seen."""
    out: dict[str, tuple[str, datetime, datetime | None]] = {}
    for e in events:
        if e.kind != "anomaly":
            continue
        assert e.opened_at is not None
        sid, opened, resolved = out.get(e.event_id, (e.sensor_id, e.opened_at, None))
        out[e.event_id] = (sid, opened, e.resolved_at or resolved)
    return out


def overlaps(alert: tuple[str, datetime, datetime | None], inc: Incident) -> bool:
    sid, opened, resolved = alert
    return (
        sid == inc.sensor_id
        and opened <= inc.end + GRACE
        and (resolved is None or resolved >= inc.start)
    )


def wait_quiet(
    proc: ScorerProcess, listener: AlertListener, base: int = 0, timeout_s: float = 20.0
) -> None:
    """Until every alert the scorer counted as published has reached the listener (``base``:
    alerts the listener had before this process started)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sent = sum(
            proc.metric(f"sensorpipe_scorer_alerts_{s}_total")
            for s in ("opened", "updated", "resolved")
        )
        if base + sent == len(listener.events()):
            time.sleep(0.3)
            if base + sent == len(listener.events()):
                return
        time.sleep(0.05)
    raise TimeoutError("alerts still in flight")


def replay(models_dir: Path, history: list[Reading], live: list[Reading]) -> list[AnomalyEvent]:
    """The same readings through the library in-process: warm start, score, alert machine."""
    from core.scoring.alerts import AlertMachine
    from scorer.models import load_models
    from scorer.settings import ScorerSettings

    models = load_models(models_dir)
    histories: dict[str, list[tuple[datetime, float]]] = {}
    for r in history:
        histories.setdefault(r.sensor_id, []).append((r.time, r.value))
    models.scorer.warm_start_many(histories)
    settings = ScorerSettings(
        database_url="postgresql://unused",
        mqtt_url="mqtt://unused",
        alert_clear_readings=int(ALERT_ENV["ALERT_CLEAR_READINGS"]),
    )
    machine = AlertMachine(settings.alert_config)
    now = datetime.now(UTC)
    return [
        e
        for score in models.scorer.score_batch(live)
        for e in machine.observe(score, model_version=models.version, now=now)
    ]


def backtest_scores(
    models_dir: Path, readings: list[Reading], tmp_path: Path
) -> dict[tuple[str, datetime], tuple[float, bool]]:
    """``(sensor, time) → (anomaly_score, is_anomaly)`` from ``sensorpipe backtest``."""
    import csv

    from sensorpipe.__main__ import main

    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    with src.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sensor_id", "timestamp", "value"])
        w.writerows([r.sensor_id, r.time.isoformat(), repr(r.value)] for r in readings)
    args = ["backtest", "--input", str(src), "--output", str(out), "--models-dir", str(models_dir)]
    assert main(args) == 0
    with out.open(newline="") as f:
        return {
            (row["sensor_id"], datetime.fromisoformat(row["timestamp"])): (
                float(row["anomaly_score"]),
                row["is_anomaly"] == "1",
            )
            for row in csv.DictReader(f)
        }


def test_labelled_incidents_to_alerts_on_mqtt_and_rows_exactly_once(
    scorer_factory: Callable[..., ScorerProcess],
    listener: AlertListener,
    publisher: Publisher,
    db_url: str,
    models_dir: Path,
    tmp_path: Path,
) -> None:
    ticks = 1500
    # The simulated signals follow the time of day (daily cycles, a machine's shifts), so the
    # scenario starts at a fixed phase — the last 6-hour boundary before it must begin — and
    # the detector figures below do not depend on when the suite runs. The readings are then up
    # to ~6.5 h old: the warm-start window is widened to cover the stored history.
    latest = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=ticks + 60)
    start = latest.replace(minute=0, second=0) - timedelta(hours=latest.hour % 6)
    sim = Simulator(
        make_sensors(6, prefix="it"),
        seed=24,
        interval_s=1.0,
        start=start,
        anomaly_rate=0.002,
        kinds=("level_shift",),
    )
    samples = list(sim.samples(ticks))
    incidents = sim.close()
    live_from = sim.time_of(HISTORY_TICKS)
    history = [s.reading for s in samples if s.reading.time < live_from]
    live = [s.reading for s in samples if s.reading.time >= live_from]
    store_history(db_url, history)

    proc = scorer_factory(SCORER_WARM_START_WINDOW_S=str(12 * 3600))
    listener.wait_status(b"online")
    publisher.send(live)
    proc.wait_metric("sensorpipe_scorer_readings_scored_total", len(live))
    wait_quiet(proc, listener)
    seen = listener.events()

    # The service adds nothing and loses nothing: what arrives over MQTT is exactly what the
    # library decides on the same readings (same ids, states, severities, times, in order).
    def key(e: AnomalyEvent) -> tuple[object, ...]:
        return (e.event_id, e.sensor_id, e.state, e.severity, e.timestamp, e.opened_at)

    want = replay(models_dir, history, live)
    assert sorted(map(key, seen)) == sorted(map(key, want))
    for sid in {e.sensor_id for e in want}:
        assert [key(e) for e in seen if e.sensor_id == sid] == [
            key(e) for e in want if e.sensor_id == sid
        ]

    # Backtest equals streaming: `sensorpipe backtest` on the same readings gives each alert's
    # triggering reading exactly the score the live scorer published.
    backtest = backtest_scores(models_dir, history + live, tmp_path)
    for e in seen:
        if e.state != "resolved":
            assert backtest[(e.sensor_id, e.timestamp)] == (e.score, True), e

    # Incident level, with the budgets stated at the top of this module.
    expected = [i for i in incidents if i.start >= live_from]
    assert len(expected) >= 5, "the seed should give the test something to find"
    alerts = intervals(seen)
    per_incident = [[eid for eid, a in alerts.items() if overlaps(a, i)] for i in expected]
    assert sum(len(h) >= 1 for h in per_incident) >= MIN_RECALL * len(expected), per_incident
    assert sum(len(h) == 1 for h in per_incident) >= MIN_SINGLE * len(expected), per_incident
    false = [eid for eid, a in alerts.items() if not any(overlaps(a, i) for i in incidents)]
    assert len(false) <= FALSE_ALERTS_PER_1000 * len(live) / 1000, false

    # Every alert seen on MQTT is one row, in the state of its last event; opened once each.
    rows = {str(r["event_id"]): r for r in event_rows(db_url)}
    assert set(rows) == set(alerts)
    last_state = {e.event_id: e.state for e in seen}
    for eid, row in rows.items():
        assert row["state"] == ("resolved" if last_state[eid] == "resolved" else "open")
    assert len([e for e in seen if e.state == "open"]) == len(alerts)

    # SIGTERM: drain, retained "offline", exit 0.
    mark = len(listener.statuses)
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    listener.wait_status(b"offline", after=mark)


def shifted(
    readings: list[Reading], sensor_id: str, t0: datetime, t1: datetime, offset: float
) -> list[Reading]:
    return [
        r.model_copy(update={"value": r.value + offset})
        if r.sensor_id == sensor_id and t0 <= r.time <= t1
        else r
        for r in readings
    ]


def test_kill_9_mid_incident_then_restart_continues_the_same_alert(
    scorer_factory: Callable[..., ScorerProcess],
    listener: AlertListener,
    publisher: Publisher,
    db_url: str,
) -> None:
    ticks = HISTORY_TICKS + 200
    sim, readings = simulate("k9", ticks)
    target = readings[0].sensor_id
    values = [r.value for r in readings if r.sensor_id == target]
    spread = max(values) - min(values)
    t_on = sim.time_of(HISTORY_TICKS + 40)
    t_off = sim.time_of(HISTORY_TICKS + 80)
    readings = shifted(readings, target, t_on, t_off, 3.0 * spread)
    live_from = sim.time_of(HISTORY_TICKS)
    t_kill = sim.time_of(HISTORY_TICKS + 55)
    store_history(db_url, [r for r in readings if r.time < live_from])

    first = scorer_factory()
    listener.wait_status(b"online")
    before = [r for r in readings if live_from <= r.time <= t_kill]
    publisher.send(before)
    first.wait_metric("sensorpipe_scorer_readings_scored_total", len(before))
    wait_quiet(first, listener)
    opened = [e for e in listener.events() if e.sensor_id == target]
    assert [e.state for e in opened][:1] == ["open"], opened
    # The ingestor has stored what was published; then the scorer dies without any cleanup.
    store_history(db_url, before)
    mark = len(listener.statuses)
    first.signal(signal.SIGKILL)
    first.wait()
    listener.wait_status(b"offline", after=mark)  # the broker sent the last will

    base = len(listener.events())
    second = scorer_factory()
    listener.wait_status(b"online", after=mark)
    after = [r for r in readings if r.time > t_kill]
    publisher.send(after)
    second.wait_metric("sensorpipe_scorer_readings_scored_total", len(after))
    wait_quiet(second, listener, base)

    events = [e for e in listener.events() if e.sensor_id == target]
    assert [e.state for e in events].count("open") == 1, events
    assert len({e.event_id for e in events}) == 1, events
    assert events[-1].state == "resolved"
    rows = [r for r in event_rows(db_url) if r["sensor_id"] == target]
    assert [(r["event_id"], r["state"]) for r in rows] == [(events[0].event_id, "resolved")]
    assert "1 open incidents" in second.log()


def test_deadman_alert_when_a_sensor_goes_silent_and_resolution_when_it_returns(
    scorer_factory: Callable[..., ScorerProcess],
    listener: AlertListener,
    publisher: Publisher,
    db_url: str,
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sensors (sensor_id, expected_interval_s) "
            "VALUES ('dm-1', 0.1), ('dm-2', 0.1)"
        )
    proc = scorer_factory(
        ALERT_DEADMAN_FLOOR_S="1.0", ALERT_DEADMAN_FACTOR="3", SCORER_DEADMAN_CHECK_S="0.2"
    )
    listener.wait_status(b"online")
    now = datetime.now(UTC)
    publisher.send([Reading(sensor_id=sid, time=now, value=1.0) for sid in ("dm-1", "dm-2")])
    # dm-2 keeps reporting, dm-1 falls silent.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not [e for e in listener.events() if e.kind == "deadman"]:
        publisher.send([Reading(sensor_id="dm-2", time=datetime.now(UTC), value=1.0)])
        time.sleep(0.1)
    [opened] = [e for e in listener.events() if e.kind == "deadman"]
    assert (opened.sensor_id, opened.state, opened.value) == ("dm-1", "open", None)
    publisher.send([Reading(sensor_id="dm-1", time=datetime.now(UTC), value=1.0)])
    proc.wait_metric("sensorpipe_scorer_alerts_resolved_total", 1)
    wait_quiet(proc, listener)
    dm = [e for e in listener.events() if e.kind == "deadman"]
    assert [(e.event_id, e.state) for e in dm] == [
        (opened.event_id, "open"),
        (opened.event_id, "resolved"),
    ]
    rows = event_rows(db_url)
    assert [(r["event_id"], r["kind"], r["state"]) for r in rows] == [
        (opened.event_id, "deadman", "resolved")
    ]


def test_a_slowly_reporting_sensor_is_warm_after_a_restart(
    scorer_factory: Callable[..., ScorerProcess],
    listener: AlertListener,
    publisher: Publisher,
    db_url: str,
) -> None:
    # A sensor reporting every 15 minutes: the 100-reading warm-up is a day of its readings, so
    # a warm start that only looked a few hours back would reopen it after every restart.
    rng = np.random.default_rng(3)
    now = datetime.now(UTC).replace(microsecond=0)
    x = np.zeros(300)
    for i in range(1, len(x)):
        x[i] = 0.8 * x[i - 1] + rng.normal(0.0, 0.5)
    first = now - timedelta(minutes=15 * len(x))
    store_history(
        db_url,
        (
            Reading(sensor_id="slow-1", time=first + timedelta(minutes=15 * i), value=20.0 + v)
            for i, v in enumerate(x)
        ),
    )
    scorer_factory()  # the default warm-start settings
    listener.wait_status(b"online")
    publisher.send([Reading(sensor_id="slow-1", time=now, value=60.0)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not listener.events():
        time.sleep(0.05)
    [alert] = listener.events()
    assert (alert.sensor_id, alert.kind, alert.state) == ("slow-1", "anomaly", "open")


def test_refuses_to_start_without_models(
    db_url: str, mqtt: MosquittoServer, tmp_path: Path
) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    proc = ScorerProcess(
        db_url=db_url, mqtt_url=mqtt.url, models_dir=empty, log_path=tmp_path / "scorer.log"
    ).start()
    assert proc.wait() == 1
    assert "ModelError" in proc.log() and "active.json" in proc.log()


def copy_version(models_dir: Path, name: str, src: int, dst: int) -> None:
    """A "retrained" version: the same bytes under a new version number."""
    import json
    import shutil

    from core.registry import artifact_path, meta_path

    shutil.copy(artifact_path(models_dir, name, src), artifact_path(models_dir, name, dst))
    meta = json.loads(meta_path(models_dir, name, src).read_text())
    meta_path(models_dir, name, dst).write_text(json.dumps({**meta, "version": dst}))


def test_ready_sighup_reload_and_shadow_figures(
    db_url: str,
    mqtt: MosquittoServer,
    models_dir: Path,
    listener: AlertListener,
    publisher: Publisher,
    tmp_path: Path,
) -> None:
    import json
    import shutil
    import urllib.request

    from core.registry import activate, read_shadow_stats, set_shadow

    own = tmp_path / "models"
    shutil.copytree(models_dir, own)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=400)
    sim = Simulator(make_sensors(2, prefix="sh"), seed=9, interval_s=1.0, start=start)
    store_history(db_url, [s.reading for _ in range(150) for s in sim.tick()])
    proc = ScorerProcess(
        db_url=db_url,
        mqtt_url=mqtt.url,
        models_dir=own,
        log_path=tmp_path / "scorer.log",
        SCORER_SHADOW_STATS_S="0.5",
    ).start()
    try:
        listener.wait_status(b"online")
        url = f"http://127.0.0.1:{proc.metrics_port}/health/ready"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200
            assert json.loads(resp.read())["checks"] == {
                "models": "ok",
                "warm_start": "ok",
                "mqtt": "ok",
            }
        assert proc.metric("sensorpipe_scorer_model_loaded", 'version="1"') == 2

        # Activate a new detector version, then SIGHUP: the scorer swaps it in between batches.
        copy_version(own, "anomaly_detector", 1, 2)
        activate(own, "anomaly_detector", 2)
        proc.signal(signal.SIGHUP)
        proc.wait_metric("sensorpipe_scorer_model_reloads_total", 1)
        assert proc.metric("sensorpipe_scorer_model_reloads_total", 'result="ok"') == 1
        wait_loaded(proc, 'model="anomaly_detector",version="2"')

        # A candidate v3 in shadow: scored beside v2 on live readings, figures in the registry.
        copy_version(own, "anomaly_detector", 1, 3)
        set_shadow(own, "anomaly_detector", 3)
        proc.signal(signal.SIGHUP)
        proc.wait_metric("sensorpipe_scorer_model_reloads_total", 2)
        wait_loaded(proc, 'model="anomaly_detector",version="3"', "sensorpipe_scorer_shadow_loaded")
        live = [s.reading for _ in range(100) for s in sim.tick()]
        publisher.send(live)
        proc.wait_metric("sensorpipe_scorer_readings_scored_total", len(live))
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
        stats = read_shadow_stats(own, "anomaly_detector")
        assert stats is not None and stats.version == 3
        # The same forest under another number: full agreement, equal errors and alerts.
        assert stats.n_scored == len(live) and stats.agreement == 1.0
        assert stats.candidate_error == stats.active_error
        assert stats.candidate_alerts == stats.active_alerts
    finally:
        proc.stop()


def wait_loaded(
    proc: ScorerProcess, labels: str, metric: str = "sensorpipe_scorer_model_loaded"
) -> None:
    deadline = time.monotonic() + 10.0
    while proc.metric(metric, labels) != 1:
        assert time.monotonic() < deadline, proc.log()
        time.sleep(0.1)


def test_alert_waits_for_the_database_and_is_never_published_unstored(
    pg_factory: Callable[[], PgServer],
    mqtt: MosquittoServer,
    models_dir: Path,
    listener: AlertListener,
    publisher: Publisher,
    tmp_path: Path,
) -> None:
    pg = pg_factory()
    db = pg.dsn("sensorpipe")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO sensors (sensor_id, expected_interval_s) VALUES ('db-1', 0.1)")
    proc = ScorerProcess(
        db_url=db,
        mqtt_url=mqtt.url,
        models_dir=models_dir,
        log_path=tmp_path / "scorer.log",
        ALERT_DEADMAN_FLOOR_S="1.0",
        ALERT_DEADMAN_FACTOR="3",
        SCORER_DEADMAN_CHECK_S="0.2",
    ).start()
    try:
        listener.wait_status(b"online")
        publisher.send([Reading(sensor_id="db-1", time=datetime.now(UTC), value=1.0)])
        proc.wait_metric("sensorpipe_scorer_readings_scored_total", 1)
        pg.stop()
        # The deadman alert is due now, but it cannot be stored: it is retried, not published.
        proc.wait_metric("sensorpipe_scorer_alert_errors_total", 1, timeout_s=20)
        time.sleep(1.0)
        assert listener.events() == []
        pg.start()
        deadline = time.monotonic() + 30
        while not listener.events():
            assert time.monotonic() < deadline, proc.log()
            time.sleep(0.1)
        [event] = listener.events()
        assert (event.sensor_id, event.kind, event.state) == ("db-1", "deadman", "open")
        assert [(r["event_id"], r["state"]) for r in event_rows(db)] == [(event.event_id, "open")]
    finally:
        proc.stop()
