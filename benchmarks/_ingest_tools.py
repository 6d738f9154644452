"""Building blocks of ``bench_ingest.py``: private servers, broker backlogs, the raw limits
(paho receive, COPY, idempotent COPY), a naive per-message-INSERT ingestor, and the real
ingestor as a subprocess whose metrics and RSS are sampled.

Throughput figures drain a *backlog*: the messages are queued in the broker for the subscriber's
persistent session first (by ``mosquitto_pub -l``, in C, so the publisher costs nothing while we
measure), then the subscriber connects and we time first-to-last. Raw limits and the ingestor are
measured the same way on the same servers in the same run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.servers import REPO, MosquittoServer, PgServer, free_port, migrate

TEMPLATE = "bench_template"
RECEIVE_MAXIMUM = 4000
FILTERS = ["sensors/+/readings", "sensors/+/senml"]


@dataclass
class Servers:
    pg: PgServer
    _n: int = 0

    def fresh_db(self) -> str:
        self._n += 1
        return self.pg.create_db(f"bench_{self._n}", template=TEMPLATE)


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    pg = PgServer().start()
    try:
        migrate(pg.create_db(TEMPLATE))
        yield Servers(pg)
    finally:
        pg.destroy()


@contextlib.contextmanager
def broker() -> Iterator[MosquittoServer]:
    b = MosquittoServer().start()
    try:
        yield b
    finally:
        b.destroy()


def connect_props(receive_maximum: int = RECEIVE_MAXIMUM) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = receive_maximum
    return props


def make_session(b: MosquittoServer, client_id: str) -> None:
    """Create a persistent session subscribed to the data topics, then leave: the broker queues
    everything published afterwards for ``client_id``."""
    done = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    c.on_subscribe = lambda *_: done.set()
    c.on_connect = lambda cl, *_: cl.subscribe([(f, SubscribeOptions(qos=1)) for f in FILTERS])
    c.connect("127.0.0.1", b.port, clean_start=False, properties=connect_props())
    c.loop_start()
    if not done.wait(10):
        raise RuntimeError("could not create the session")
    c.disconnect()
    c.loop_stop()


def base_time() -> datetime:
    return datetime.now(UTC) - timedelta(days=2)


def _line_publisher(b: MosquittoServer, topic: str) -> list[str]:
    """``mosquitto_pub`` publishing each stdin line as one QoS 1 message (1,000 in flight)."""
    return [
        "mosquitto_pub",
        "-h",
        "127.0.0.1",
        "-p",
        str(b.port),
        "-q",
        "1",
        "-M",
        "1000",
        "-l",
        "-t",
        topic,
    ]


def preload(
    b: MosquittoServer, prefix: str, sensors: int, messages: int, per_message: int = 1
) -> int:
    """Queue ``messages`` messages (``per_message`` readings each) spread over ``sensors``
    topics; returns the number of readings. Times are unique per sensor."""
    t0 = base_time().timestamp()
    per_sensor = max(1, messages // sensors)
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(sensors):
            sid = f"{prefix}-{i}"
            path = Path(tmp, f"{sid}.jsonl")
            with path.open("w") as f:
                for k in range(per_sensor):
                    items = [
                        {
                            "sensor_id": sid,
                            "value": (k * per_message + j) * 0.5,
                            "timestamp": round(t0 + (k * per_message + j) * 0.001, 3),
                        }
                        for j in range(per_message)
                    ]
                    f.write(
                        json.dumps(items[0] if per_message == 1 else items, separators=(",", ":"))
                        + "\n"
                    )
            with path.open("rb") as stdin:
                procs.append(
                    subprocess.Popen(
                        _line_publisher(b, f"sensors/{sid}/readings"),
                        stdin=stdin,
                    )
                )
        for p in procs:
            if p.wait(600) != 0:
                raise RuntimeError("mosquitto_pub failed")
    return per_sensor * sensors * per_message


def register_sensors(dsn: str, prefix: str, sensors: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sensors (sensor_id) SELECT %s || '-' || g "
            "FROM generate_series(0, %s - 1) g ON CONFLICT DO NOTHING",
            (prefix, sensors),
        )


def nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --------------------------------------------------------------------------- raw limits


class _Drain:
    """Counts messages; ``on_each`` does the per-message work of the subscriber under test."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.n = 0
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()

    def hit(self) -> None:
        now = time.perf_counter()
        if self.n == 0:
            self.first = now
        self.n += 1
        self.last = now
        if self.n >= self.expected:
            self.done.set()

    def rate(self) -> float:
        return (self.n - 1) / (self.last - self.first) if self.n > 1 else 0.0


def drain_with_paho(
    b: MosquittoServer,
    client_id: str,
    expected: int,
    timeout_s: float,
    work: object = None,
    batched_ack: bool = False,
) -> float:
    """Connect the session and receive the backlog with paho at QoS 1. By default paho
    acknowledges each message after the callback; ``batched_ack`` acknowledges from another
    thread every 50 ms instead (the ingestor's pattern, minus the database). ``work(msg)`` runs
    per message (the naive ingestor's INSERT)."""
    d = _Drain(expected)
    c = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5,
        manual_ack=batched_ack,
    )
    c.on_socket_open = lambda _c, _u, sock: nodelay(sock)
    pending: list[int] = []

    def on_message(_c: paho.Client, _u: object, m: paho.MQTTMessage) -> None:
        if work is not None:
            work(m)  # type: ignore[operator]
        if batched_ack:
            pending.append(m.mid)
        d.hit()

    def acker() -> None:
        while not d.done.is_set():
            time.sleep(0.05)
            while pending:
                c.ack(pending.pop(0), 1)

    c.on_message = on_message
    c.connect("127.0.0.1", b.port, clean_start=False, properties=connect_props())
    c.loop_start()
    if batched_ack:
        threading.Thread(target=acker, daemon=True).start()
    d.done.wait(timeout_s)
    c.disconnect()
    c.loop_stop()
    return d.rate()


def naive_ingestor(dsn: str) -> tuple[object, psycopg.Connection]:
    """The typical small ingestor: json.loads and one autocommitted INSERT per message."""
    conn = psycopg.connect(dsn, autocommit=True)

    def work(m: paho.MQTTMessage) -> None:
        doc = json.loads(m.payload)
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, value) "
            "VALUES (to_timestamp(%s), %s, %s) ON CONFLICT DO NOTHING",
            (doc["timestamp"], doc["sensor_id"], doc["value"]),
        )

    return work, conn


def _rows(prefix: str, sensors: int, n: int) -> list[tuple[datetime, str, float, datetime]]:
    t0 = base_time()
    now = datetime.now(UTC)
    per = n // sensors
    return [
        (t0 + timedelta(milliseconds=k), f"{prefix}-{i}", float(k), now)
        for i in range(sensors)
        for k in range(per)
    ]


def copy_rate(dsn: str, n: int, batch: int = 5000, idempotent: bool = False) -> float:
    """Binary COPY of ``n`` rows in transactions of ``batch``: straight into sensor_readings,
    or (``idempotent``) into a temp staging table then INSERT ... ON CONFLICT DO NOTHING."""
    from ingestor import queries

    register_sensors(dsn, "cp", 20)
    rows = _rows("cp", 20, n)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(queries.CREATE_STAGING)
        target = (
            "COPY ingest_staging (time, sensor_id, value, received_at) FROM STDIN (FORMAT BINARY)"
            if idempotent
            else "COPY sensor_readings (time, sensor_id, value, received_at) FROM STDIN "
            "(FORMAT BINARY)"
        )
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(target) as copy:
                    copy.set_types(queries.STAGING_TYPES)
                    for row in rows[i : i + batch]:
                        copy.write_row(row)
                if idempotent:
                    cur.execute(queries.MOVE_STAGED)
        elapsed = time.perf_counter() - started
        stored = conn.execute("SELECT count(*) FROM sensor_readings").fetchone()
    assert stored is not None and stored[0] == len(rows), stored
    return len(rows) / elapsed


# --------------------------------------------------------------------------- the ingestor


class IngestorProcess:
    """``python -m ingestor`` with env settings; metrics scraped, RSS sampled every 100 ms."""

    def __init__(self, dsn: str, b: MosquittoServer, client_id: str, **env: str) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "MQTT_URL": b.url,
            "INGEST_CLIENT_ID": client_id,
            "INGEST_METRICS_PORT": str(self.port),
            "INGEST_METRICS_HOST": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "INGEST_RECEIVE_MAXIMUM": str(RECEIVE_MAXIMUM),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.max_rss = 0
        self._sampling = False

    def __enter__(self) -> IngestorProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "ingestor"], env=self.env, cwd=REPO)
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._sampling = False
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def _sample(self) -> None:
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status")
        while self._sampling:
            with contextlib.suppress(OSError, ValueError):
                for line in status.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.max_rss = max(self.max_rss, int(line.split()[1]) * 1024)
            time.sleep(0.1)

    def metric(self, name: str) -> float:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/metrics",
                timeout=2,
            ) as resp:
                text = resp.read().decode()
        except OSError:
            return 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{self.port}/health/ready"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            time.sleep(0.1)
        raise RuntimeError("the ingestor did not become ready")

    def rows_rate(self, expected: int, timeout_s: float) -> float:
        """Rows committed per second, from the first committed batch to the last row."""
        deadline = time.monotonic() + timeout_s
        first_t, first_n = 0.0, 0.0
        n = 0.0
        while time.monotonic() < deadline:
            n = self.metric("sensorpipe_ingestor_rows_written_total")
            now = time.perf_counter()
            if n > 0 and first_t == 0.0:
                first_t, first_n = now, n
            if n >= expected:
                return (n - first_n) / (now - first_t) if now > first_t else 0.0
            # Scraping /metrics costs the ingestor CPU: 4 Hz keeps that under 1% of a run.
            time.sleep(0.25)
        raise RuntimeError(f"ingestor stored {n} of {expected} rows in {timeout_s}s")


# --------------------------------------------------------------------------- latency

PACED_PUBLISHER = r"""
import json, socket, sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
port, sensors = int(sys.argv[1]), int(sys.argv[4])
rate, duration = float(sys.argv[2]), float(sys.argv[3])
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-paced", protocol=paho.MQTTv5)
c.on_socket_open = lambda _c, _u, s: s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c.max_inflight_messages_set(1000)
acked = [0]
c.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
c.connect("127.0.0.1", port)
c.loop_start()
start = time.monotonic()
n = int(rate * duration)
for i in range(n):
    ahead = start + i / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
    sid = f"lat-{i % sensors}"
    c.publish(f"sensors/{sid}/readings", json.dumps(
        {"sensor_id": sid, "value": float(i), "timestamp": time.time()}), qos=1)
deadline = time.monotonic() + 60
while acked[0] < n and time.monotonic() < deadline:
    time.sleep(0.05)
c.disconnect()
c.loop_stop()
print(n)
"""


def latency_run(
    dsn: str, b: MosquittoServer, rate: float, duration_s: float, sensors: int = 20
) -> tuple[list[float], int]:
    """Publish at ``rate`` readings/s (one per message, device time = publish time) and poll
    the table every 10 ms; latency = time the row was first seen committed − publish time
    (an upper bound: it includes up to one poll interval)."""
    register_sensors(dsn, "lat", sensors)
    pub = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PACED_PUBLISHER,
            str(b.port),
            str(rate),
            str(duration_s),
            str(sensors),
        ],
        stdout=subprocess.PIPE,
    )
    latencies: list[float] = []
    last = datetime(2000, 1, 1, tzinfo=UTC)
    expected = int(rate * duration_s)
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + duration_s + 30
        while len(latencies) < expected and time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT time FROM sensor_readings WHERE sensor_id LIKE 'lat-%%' "
                "AND time > %s ORDER BY time",
                (last,),
            ).fetchall()
            now = time.time()
            for (t,) in rows:
                latencies.append(now - t.timestamp())
            if rows:
                last = rows[-1][0]
            time.sleep(0.01)
    pub.wait(60)
    return latencies, expected


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


# --------------------------------------------------------------------------- soak


def paced_feed(
    b: MosquittoServer, prefix: str, sensors: int, rate: float, duration_s: float
) -> int:
    """Publish one reading per message at ``rate`` msg/s for ``duration_s`` through
    ``mosquitto_pub -l`` processes (one per sensor topic), fed line by line from here; returns
    the number of readings published (all acknowledged by the broker when this returns)."""
    procs = [
        subprocess.Popen(
            _line_publisher(b, f"sensors/{prefix}-{i}/readings"),
            stdin=subprocess.PIPE,
            bufsize=1 << 16,
        )
        for i in range(sensors)
    ]
    t0 = base_time().timestamp()
    start = time.monotonic()
    total = int(rate * duration_s)
    tick = 0.01  # write in 10 ms slices: smooth enough, cheap enough
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - start + tick) * rate))
        for k in range(sent, due):
            i = k % sensors
            line = (
                f'{{"sensor_id":"{prefix}-{i}","value":{k * 0.5},'
                f'"timestamp":{t0 + k * 0.001:.3f}}}\n'
            )
            stdin = procs[i].stdin
            assert stdin is not None
            stdin.write(line.encode())
        sent = due
        for p in procs:
            assert p.stdin is not None
            p.stdin.flush()
        time.sleep(tick)
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
    for p in procs:
        if p.wait(600) != 0:
            raise RuntimeError("mosquitto_pub failed")
    return sent
