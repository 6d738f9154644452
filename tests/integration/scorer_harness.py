"""Helpers to drive a real scorer process: models, history, MQTT in and out, metrics.

Used by the scorer's integration tests and by ``benchmarks/bench_scorer_latency.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from core.settings import parse_mqtt_url
from core.topics import ALERTS_FILTER, status_topic
from core.wire import AnomalyEvent, Reading, decode_event, encode_reading, encode_readings
from simulators import Simulator, make_sensors
from tests.servers import REPO, free_port

# The scorer's environment in the integration tests: a clearing window long enough that a level
# shift the scorer adapts to (≈20 readings in) and its return to normal stay one incident; see
# docs/perf/scorer.md.
ALERT_ENV = {"ALERT_CLEAR_READINGS": "30"}


def build_models(models_dir: Path, *, seed: int = 11) -> None:
    """Fit and activate a detector and a forecaster on clean simulated history, in the registry
    layout ``core.registry`` loads (what ``sensorpipe train`` writes)."""
    from datetime import UTC, datetime, timedelta

    from core.scoring import ScoringConfig
    from core.scoring.training import fit_detector, select_forecaster, write_artifact
    from simulators import simulate

    start = datetime.now(UTC) - timedelta(days=3)
    series: dict[str, list[tuple[datetime, float]]] = {}
    for s in simulate(6, 800, seed=seed, interval_s=60.0, start=start, anomaly_rate=0.0):
        series.setdefault(s.reading.sensor_id, []).append((s.reading.time, s.reading.value))
    config = ScoringConfig()
    # The forecaster first: the detector learns from features computed with it (as `train`).
    forecaster, fc_info = select_forecaster(list(series.values()), config)
    detector, det_info = fit_detector(list(series.values()), config, seed, spec=forecaster)
    write_artifact(models_dir, "anomaly_detector", detector, det_info)
    write_artifact(models_dir, "forecaster", forecaster, {"features": None, **fc_info})


def simulate(prefix: str, ticks: int, *, sensors: int = 3) -> tuple[Simulator, list[Reading]]:
    """``ticks`` one-second readings of ``sensors`` simulated sensors (seed 5), the last a minute
    before now, and the simulator (for the times of its ticks)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=ticks + 60)
    sim = Simulator(make_sensors(sensors, prefix=prefix), seed=5, interval_s=1.0, start=start)
    return sim, [sample.reading for sample in sim.samples(ticks)]


def store_history(db_url: str, readings: Iterable[Reading]) -> int:
    """Write readings as the ingestor would (sensors registered, ON CONFLICT DO NOTHING)."""
    rows = [(r.time, r.sensor_id, r.value) for r in readings]
    with psycopg.connect(db_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (sensor_id) VALUES (%s) ON CONFLICT DO NOTHING",
            [(sid,) for sid in sorted({r[1] for r in rows})],
        )
        with cur.copy("COPY sensor_readings (time, sensor_id, value) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return len(rows)


def event_rows(db_url: str) -> list[dict[str, object]]:
    with psycopg.connect(db_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "SELECT event_id::text AS event_id, sensor_id, kind, state, severity, score, "
            "opened_at, resolved_at FROM anomaly_events ORDER BY opened_at"
        )
        return list(cur.fetchall())


def _client(url: str, client_id: str, *, max_inflight: int = 20) -> mqtt.Client:
    """A connected paho client with TCP_NODELAY (like every sensorpipe client)."""
    target = parse_mqtt_url(url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(max_inflight)
    c.connect(target.host, target.port, keepalive=30)
    sock = c.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


@dataclass
class AlertListener:
    """A real MQTT subscriber of ``alerts/+`` and the scorer's status topic."""

    url: str
    alerts: list[tuple[float, AnomalyEvent]] = field(default_factory=list)
    statuses: list[bytes] = field(default_factory=list)
    on_alert: Callable[[float, AnomalyEvent], None] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = _client(self.url, f"test-listener-{os.getpid()}-{id(self)}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_connect = self._on_connect
        self.client.loop_start()
        if not self._ready.wait(10):
            raise TimeoutError("listener did not subscribe")

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe([(ALERTS_FILTER, 1), (status_topic("scorer"), 1)])

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        if msg.topic.startswith("alerts/"):
            event = decode_event(bytes(msg.payload), topic_sensor_id=msg.topic.split("/", 1)[1])
            with self._lock:
                self.alerts.append((now, event))
            if self.on_alert is not None:
                self.on_alert(now, event)
        else:
            with self._lock:
                self.statuses.append(bytes(msg.payload))

    def events(self) -> list[AnomalyEvent]:
        with self._lock:
            return [e for _, e in self.alerts]

    def wait_status(self, status: bytes, timeout_s: float = 90.0, after: int = 0) -> None:
        # A bound, not a speed target: a scorer starting while the suite loads both cores
        # (model load, the compiled kernel's cache, the warm start) once took over 30 s.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if status in self.statuses[after:]:
                    return
            time.sleep(0.02)
        raise TimeoutError(f"scorer status {status!r} not seen (got {self.statuses})")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Publisher:
    """QoS 1 publisher that waits for every PUBACK (the broker has the reading)."""

    def __init__(self, url: str) -> None:
        self.client = _client(url, f"test-publisher-{os.getpid()}-{id(self)}", max_inflight=1000)
        self.client.loop_start()

    def send(self, readings: Sequence[Reading], *, per_message: int = 1) -> None:
        infos = []
        by_sensor: dict[str, list[Reading]] = {}
        for r in readings:
            by_sensor.setdefault(r.sensor_id, []).append(r)
        if per_message == 1:
            for r in readings:
                infos.append(
                    self.client.publish(f"sensors/{r.sensor_id}/readings", encode_reading(r), qos=1)
                )
        else:
            for sid, rs in by_sensor.items():
                for i in range(0, len(rs), per_message):
                    infos.append(
                        self.client.publish(
                            f"sensors/{sid}/readings",
                            encode_readings(rs[i : i + per_message]),
                            qos=1,
                        )
                    )
        for info in infos:
            info.wait_for_publish(timeout=30)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class ScorerProcess:
    """``python -m scorer`` as a child process with its own environment."""

    def __init__(
        self, *, db_url: str, mqtt_url: str, models_dir: Path, log_path: Path, **env: str
    ) -> None:
        self.metrics_port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "MQTT_URL": mqtt_url,
            "MODELS_DIR": str(models_dir),
            "SCORER_METRICS_PORT": str(self.metrics_port),
            "LOG_FORMAT": "text",
            "PYTHONPATH": str(REPO),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ScorerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scorer"],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def metric(self, name: str, labels: str = "") -> float:
        """Sum of a metric's samples whose label text contains ``labels``."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {") and labels in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_metric(self, name: str, at_least: float, timeout_s: float = 60.0) -> float:
        deadline = time.monotonic() + timeout_s
        value = -1.0
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError):
                value = self.metric(name)
                if value >= at_least:
                    return value
            time.sleep(0.05)
        raise TimeoutError(f"{name} = {value} < {at_least} after {timeout_s}s\n{self.log()}")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"scorer exited with {self.proc.returncode}\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
