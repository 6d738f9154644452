"""The ingestor under faults: kill -9, database outage, broker restart, SIGTERM.

The ingestor runs as a real process (``python -m ingestor`` / ``sensorpipe ingest``) configured
by environment variables, against private PostgreSQL and Mosquitto instances the test owns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.subscribe as subscribe
import pytest

from core.settings import parse_mqtt_url
from tests.integration._ingestor_harness import (
    PacedStream,
    ProcessIngestor,
    Publisher,
    count_readings,
    reading_keys,
    running,
    settings_for,
    stream_of,
    wait_until,
)
from tests.servers import MosquittoServer, PgServer

pytestmark = pytest.mark.integration


def test_kill_9_mid_stream_then_restart_loses_nothing(
    db_url: str, broker_factory: Callable[..., MosquittoServer], tmp_path: Path
) -> None:
    """Done-when 2: SIGKILL while readings flow; the restarted ingestor (same client id, so the
    same persistent session) gets every unacknowledged message again; each row is stored once."""
    broker = broker_factory()
    msgs, keys = stream_of("k9", sensors=20, per_sensor=200)
    ing = ProcessIngestor(db_url, broker.url, "ing-k9", tmp_path / "ingestor.log").start()
    pub = Publisher(broker.url)
    stream = PacedStream(pub, msgs, rate=1500)
    try:
        stream.start()
        wait_until(lambda: count_readings(db_url) >= 600, 15, "some rows before the kill")
        ing.kill()
        killed_at = count_readings(db_url)
        assert killed_at < len(keys), "the kill came too late to be mid-stream"
        time.sleep(0.5)
        ing.start()
        stream.join(30)
        pub.wait_all()
        wait_until(lambda: count_readings(db_url) >= len(keys), 30, "every reading stored")
        time.sleep(0.5)  # anything still arriving would show up as a surplus below
        assert set(reading_keys(db_url)) == keys
        assert count_readings(db_url) == len(keys)
        assert ing.terminate() == 0
    finally:
        pub.close()
        ing.close()


def test_database_outage_is_ridden_out_with_bounded_memory(
    pg_factory: Callable[[], PgServer],
    broker_factory: Callable[..., MosquittoServer],
    tmp_path: Path,
) -> None:
    """Done-when 3: PostgreSQL stopped ~20 s while readings keep coming: the ingestor reports
    not-ready, holds at most Receive Maximum messages, and catches up by itself afterwards."""
    pg = pg_factory()
    db_url = pg.dsn("sensorpipe")
    broker = broker_factory()
    msgs, keys = stream_of("pgo", sensors=50, per_sensor=132)  # 6,600 messages over ~22 s
    ing = ProcessIngestor(
        db_url,
        broker.url,
        "ing-pgo",
        tmp_path / "ingestor.log",
        INGEST_RECEIVE_MAXIMUM="500",
        INGEST_QUEUE_MAX_MESSAGES="1000",
    ).start()
    pub = Publisher(broker.url)
    stream = PacedStream(pub, msgs, rate=300)
    try:
        stream.start()
        wait_until(lambda: count_readings(db_url) >= 300, 15, "rows before the outage")
        rss_before = ing.rss_bytes()
        pg.stop()
        outage_end = time.monotonic() + 20
        worst_held, worst_rss = 0.0, 0
        status, body = 0, {}
        while time.monotonic() < outage_end:
            worst_held = max(worst_held, ing.metric("sensorpipe_ingestor_held_messages"))
            worst_rss = max(worst_rss, ing.rss_bytes())
            status, body = ing.health()
            time.sleep(0.5)
        assert status == 503, body
        assert body["checks"]["database"] != "ok"
        assert ing.metric("sensorpipe_ingestor_db_up") == 0
        pg.start()
        stream.join(30)
        pub.wait_all()
        wait_until(lambda: count_readings(db_url) >= len(keys), 30, "the backlog to be stored")
        assert set(reading_keys(db_url)) == keys
        assert ing.proc is not None and ing.proc.poll() is None, "the ingestor was restarted"
        wait_until(ing.ready, 10, "ready again")
        # Memory: the broker never had more than Receive Maximum unacknowledged messages out to
        # us, so we held at most that many and RSS barely moved while ~6,000 piled up.
        assert 450 <= worst_held <= 500  # the bound was reached, and held
        assert worst_rss - rss_before < 50 * 1024 * 1024
        assert ing.terminate() == 0
    finally:
        pub.close()
        ing.close()


def test_broker_restart_mid_stream_loses_nothing(
    db_url: str, broker_factory: Callable[..., MosquittoServer]
) -> None:
    """Done-when 4: a graceful broker restart; persistent sessions on both sides + QoS 1."""
    broker = broker_factory()
    msgs, keys = stream_of("br", sensors=20, per_sensor=150)
    pub = Publisher(broker.url)
    stream = PacedStream(pub, msgs, rate=1000)
    with running(settings_for(db_url, broker.url)) as ing:
        stream.start()
        wait_until(lambda: count_readings(db_url) >= 500, 15, "rows before the restart")
        broker.restart()
        assert count_readings(db_url) < len(keys), "the restart came too late to be mid-stream"
        stream.join(30)
        wait_until(
            lambda: ing.metric("sensorpipe_ingestor_mqtt_connects_total") >= 2,
            15,
            "the ingestor to reconnect",
        )
        pub.wait_all()
        wait_until(lambda: count_readings(db_url) >= len(keys), 30, "every reading stored")
        assert set(reading_keys(db_url)) == keys
    pub.close()


def test_sigterm_flushes_acks_and_exits_zero(
    db_url: str, broker_factory: Callable[..., MosquittoServer], tmp_path: Path
) -> None:
    """SIGTERM mid-stream: exit 0 within the deadline, ``offline`` retained, a counters line;
    what arrived after intake stopped is redelivered to the next session and stored once."""
    broker = broker_factory()
    msgs, keys = stream_of("st", sensors=10, per_sensor=200)
    ing = ProcessIngestor(
        db_url, broker.url, "ing-st", tmp_path / "ingestor.log", INGEST_SHUTDOWN_DEADLINE_S="5"
    )
    ing.start()
    pub = Publisher(broker.url)
    stream = PacedStream(pub, msgs, rate=1000)
    try:
        stream.start()
        wait_until(lambda: count_readings(db_url) >= 300, 15, "rows before SIGTERM")
        started = time.monotonic()
        assert ing.terminate(timeout_s=10) == 0
        assert time.monotonic() - started < 6
        assert "ingestor stopped: " in ing.log_text()
        target = parse_mqtt_url(broker.url)
        status = subscribe.simple(
            "sensorpipe/status/ingestor",
            hostname=target.host,
            port=target.port,
            retained=True,
            msg_count=1,
        )
        assert status.payload == b"offline"
        stream.join(30)
        pub.wait_all()
        ing.start()
        wait_until(lambda: count_readings(db_url) >= len(keys), 30, "every reading stored")
        assert set(reading_keys(db_url)) == keys
        assert ing.terminate() == 0
    finally:
        pub.close()
        ing.close()
