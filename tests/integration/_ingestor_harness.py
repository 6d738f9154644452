"""Helpers shared by the ingestor's integration tests: publishers, ingestors in a thread or a
subprocess, and polling. The services are real (the private servers of ``tests/servers.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry

from core.settings import parse_mqtt_url
from ingestor import Ingestor, IngestorSettings
from tests.servers import REPO, free_port


def wait_until(pred: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def base_time() -> datetime:
    """Device times an hour in the past: inside retention, never in the future."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def reading(sensor: str, t: datetime, value: float, **extra: Any) -> dict[str, Any]:
    return {
        "sensor_id": sensor,
        "value": value,
        "timestamp": t.isoformat().replace("+00:00", "Z"),
        **extra,
    }


def payload(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Publisher:
    """A QoS 1 publisher with a persistent session, as a well-behaved device should be: paho
    keeps unacknowledged messages and resends them after a reconnect."""

    def __init__(self, url: str, client_id: str | None = None, max_inflight: int = 1000) -> None:
        target = parse_mqtt_url(url)
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 1)
        self.connected = threading.Event()
        self.client.on_connect = lambda *_: self.connected.set()
        # Count PUBACKs: an info's rc stays "not connected" for a message published while the
        # broker was away even after paho resent it and the broker acknowledged it.
        self.acked = 0
        self.sent = 0
        self.client.on_publish = self._on_publish
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(
            target.host, target.port, keepalive=10, clean_start=False, properties=props
        )
        self.client.loop_start()
        if not self.connected.wait(10):
            raise AssertionError("publisher could not connect")

    def _on_publish(self, *_: Any) -> None:
        self.acked += 1

    def publish(self, topic: str, body: bytes, qos: int = 1) -> None:
        self.client.publish(topic, body, qos=qos)
        self.sent += 1

    def wait_all(self, timeout_s: float = 30) -> None:
        wait_until(lambda: self.acked >= self.sent, timeout_s, "PUBACKs for every publish")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def settings_for(db_url: str, mqtt_url: str, **overrides: Any) -> IngestorSettings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "mqtt_url": mqtt_url,
        "ingest_metrics_port": 0,
        "ingest_metrics_host": "127.0.0.1",
        "ingest_client_id": f"ing-{uuid.uuid4().hex[:8]}",
        "ingest_shutdown_deadline_s": 5.0,
        "ingest_db_retry_max_s": 0.5,
        "ingest_mqtt_reconnect_max_s": 1,
        "log_format": "text",
    }
    values.update(overrides)
    return IngestorSettings(**values)


class ThreadIngestor:
    """An ``Ingestor`` running in a thread of the test process, with its own registry."""

    def __init__(self, settings: IngestorSettings) -> None:
        self.ingestor = Ingestor(settings, registry=CollectorRegistry())
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.exit_code = self.ingestor.run()

    def start(self) -> ThreadIngestor:
        self.thread.start()
        wait_until(lambda: self.ingestor.intake.readiness()[0], 15, "the ingestor to subscribe")
        return self

    def stop(self) -> int | None:
        self.ingestor.request_stop()
        self.thread.join(30)
        return self.exit_code

    def metric(self, name: str, **labels: str) -> float:
        value = self.ingestor.registry.get_sample_value(name, labels or None)
        return 0.0 if value is None else value


@contextlib.contextmanager
def running(settings: IngestorSettings) -> Iterator[ThreadIngestor]:
    ing = ThreadIngestor(settings).start()
    try:
        yield ing
    finally:
        ing.stop()


class ProcessIngestor:
    """``python -m ingestor`` as a subprocess, configured the way an operator would: env vars."""

    def __init__(
        self, db_url: str, mqtt_url: str, client_id: str, log_path: Path, **env: str
    ) -> None:
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "MQTT_URL": mqtt_url,
            "INGEST_CLIENT_ID": client_id,
            "INGEST_METRICS_PORT": str(self.metrics_port),
            "INGEST_METRICS_HOST": "127.0.0.1",
            "INGEST_MQTT_RECONNECT_MAX_S": "1",
            "INGEST_DB_RETRY_MAX_S": "0.5",
            "LOG_FORMAT": "text",
            **env,
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, args: tuple[str, ...] = ("-m", "ingestor")) -> ProcessIngestor:
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, *args], env=self.env, cwd=REPO, stdout=log, stderr=log
            )
        wait_until(self.ready, 20, "the ingestor process to be ready")
        return self

    def health(self) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.metrics_port}/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return 0, {}

    def ready(self) -> bool:
        return self.health()[0] == 200

    def metrics_text(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode())

    def metric(self, name: str) -> float:
        for line in self.metrics_text().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self, timeout_s: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def count_readings(db_url: str, like: str = "%") -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM sensor_readings WHERE sensor_id LIKE %s", (like,)
        ).fetchone()
        return int(row[0]) if row else 0


def reading_keys(db_url: str) -> list[tuple[str, datetime]]:
    with psycopg.connect(db_url) as conn:
        return [
            (r[0], r[1])
            for r in conn.execute("SELECT sensor_id, time FROM sensor_readings ORDER BY 1, 2")
        ]


def rejects(db_url: str) -> list[tuple[str, str, int | None, bytes]]:
    with psycopg.connect(db_url) as conn:
        return [
            (r[0], r[1], r[2], bytes(r[3]))
            for r in conn.execute(
                "SELECT topic, reason, item_index, payload FROM rejected_messages ORDER BY id"
            )
        ]


class PacedStream(threading.Thread):
    """Publishes ``messages`` at about ``rate`` per second from a thread (a steady device fleet)."""

    def __init__(self, pub: Publisher, messages: list[tuple[str, bytes]], rate: float) -> None:
        super().__init__(daemon=True)
        self.pub = pub
        self.messages = messages
        self.rate = rate
        self.sent = 0

    def run(self) -> None:
        start = time.monotonic()
        for i, (topic, body) in enumerate(self.messages):
            ahead = start + i / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            self.pub.publish(topic, body)
            self.sent += 1


def stream_of(
    prefix: str, sensors: int, per_sensor: int
) -> tuple[list[tuple[str, bytes]], set[tuple[str, datetime]]]:
    """One reading per message, interleaved across sensors; returns messages and expected keys."""
    t0 = base_time()
    msgs: list[tuple[str, bytes]] = []
    keys: set[tuple[str, datetime]] = set()
    for k in range(per_sensor):
        for i in range(sensors):
            sid, t = f"{prefix}-{i}", t0 + timedelta(milliseconds=100 * k)
            msgs.append((f"sensors/{sid}/readings", payload(reading(sid, t, float(k)))))
            keys.add((sid, t))
    return msgs, keys
