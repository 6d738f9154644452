"""``sensorpipe simulate`` against a real Mosquitto: every acknowledged reading arrives exactly
once, the labels file is the injected ground truth, and the same seed gives the same data."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.topics import READINGS_FILTER, SENML_FILTER, parse_topic
from core.wire import Limits, Reading, decode
from simulators.csvfiles import read_labels, read_readings
from simulators.simulation import Simulator, make_sensors
from tests.servers import REPO, MosquittoServer

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "sensorpipe", "simulate"]
NO_LIMITS = Limits(max_future_skew_s=None, max_age_s=None)
SUMMARY = re.compile(r"sent=(\d+) failed=(\d+) readings \((\d+) messages\)")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "MQTT_URL"}
    full_env.update(env or {})
    return subprocess.run(
        [*CLI, "--quiet", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def summary(out: str) -> tuple[int, int, int]:
    m = SUMMARY.search(out)
    assert m, out
    return int(m[1]), int(m[2]), int(m[3])


class Subscriber:
    """A plain paho subscriber collecting every reading published under one sensor prefix."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        self.readings: list[Reading] = []
        self.messages = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        port = int(url.rsplit(":", 1)[1])
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(READINGS_FILTER, 1), (SENML_FILTER, 1)])
        assert self._subscribed.wait(10), "no SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        kind, sid = parse_topic(msg.topic)
        if not sid.startswith(self.prefix):
            return
        decoded = decode(kind, bytes(msg.payload), topic_sensor_id=sid, limits=NO_LIMITS)
        with self._lock:
            self.messages += 1
            self.readings.extend(decoded.readings)
            self.errors.extend(e.reason for e in decoded.errors)

    def wait_for(self, n: int, timeout_s: float = 20.0) -> list[Reading]:
        """Wait for ``n`` readings, then a quiet moment so extra (duplicate) ones would show."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.readings) < n:
            time.sleep(0.02)
        time.sleep(0.3)
        with self._lock:
            return list(self.readings)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:8]


@pytest.fixture
def subscriber(broker: MosquittoServer, prefix: str) -> Iterator[Subscriber]:
    sub = Subscriber(broker.url, prefix)
    yield sub
    sub.close()


def key(r: Reading) -> tuple[str, datetime, float]:
    return (r.sensor_id, r.time, r.value)


START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.mark.parametrize(("fmt", "batch"), [("json", 1), ("json", 7), ("senml", 1), ("senml", 10)])
def test_publishes_exactly_n_acknowledged_readings(
    broker: MosquittoServer, tmp_path: Path, fmt: str, batch: int
) -> None:
    # A fixed prefix: sensor ids seed the generators, so the data (and its dropouts) are the same
    # on every run. Cases run one after the other and each waits for all of its messages.
    prefix = "exact"
    sensors, ticks, seed, rate = 6, 60, 11, 2.0
    subscriber = Subscriber(broker.url, prefix)
    labels = tmp_path / "labels.csv"
    # A high anomaly rate so every incident kind, dropouts included, is likely to occur.
    run = run_cli(
        "--broker", broker.url, "--sensors", str(sensors), "--prefix", prefix,
        "--count", str(ticks), "--rate", str(rate), "--seed", str(seed),
        "--start", START.isoformat(), "--anomaly-rate", "0.05", "--qos", "1",
        "--format", fmt, "--batch", str(batch), "--labels", str(labels),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr

    sim = Simulator(
        make_sensors(sensors, prefix=prefix),
        seed=seed,
        interval_s=1 / rate,
        start=START,
        anomaly_rate=0.05,
    )
    expected = [s.reading for s in sim.samples(ticks)]
    incidents = sim.close()
    assert len(expected) < sensors * ticks, "expected at least one dropout"

    sent, failed, messages = summary(run.stdout)
    assert (sent, failed) == (len(expected), 0)
    if batch == 1:
        assert messages == sent
    else:
        assert messages < sent

    got = subscriber.wait_for(len(expected))
    subscriber.close()
    assert subscriber.errors == []
    assert subscriber.messages == messages
    assert len(got) == len(expected)
    assert Counter(map(key, got)) == Counter(map(key, expected))
    with labels.open() as fh:
        assert read_labels(fh) == incidents


def test_live_run_is_paced_and_stamped_with_the_wall_clock(
    broker: MosquittoServer, subscriber: Subscriber, prefix: str
) -> None:
    before = datetime.now(UTC)
    run = run_cli(
        "--broker", broker.url, "--sensors", "2", "--prefix", prefix,
        "--count", "5", "--rate", "10",
    )  # fmt: skip
    after = datetime.now(UTC)
    assert run.returncode == 0, run.stderr
    assert summary(run.stdout)[:2] == (10, 0)
    got = subscriber.wait_for(10)
    assert len(got) == 10
    times = sorted({r.time for r in got})
    assert len(times) == 5
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(seconds=0.1)] * 4
    assert before - timedelta(seconds=1) <= times[0] and times[-1] <= after


def test_sigterm_flushes_batches_and_reports_exact_counts(
    broker: MosquittoServer, subscriber: Subscriber, prefix: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MQTT_URL"}
    proc = subprocess.Popen(
        [*CLI, "--quiet", "--broker", broker.url, "--sensors", "3", "--prefix", prefix,
         "--rate", "20", "--batch", "8"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while len(subscriber.readings) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    sent, failed, _ = summary(out)
    assert sent >= 40 and failed == 0
    # Partial batches were flushed at the stop, so every reading counted as sent arrives.
    assert len(subscriber.wait_for(sent)) == sent


def test_broker_from_mqtt_url_environment(
    broker: MosquittoServer, subscriber: Subscriber, prefix: str
) -> None:
    run = run_cli(
        "--sensors", f"{prefix}-boiler.temp,{prefix}-boiler.pressure", "--count", "3",
        "--start", START.isoformat(), env={"MQTT_URL": broker.url},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    got = subscriber.wait_for(6)
    assert sorted({r.sensor_id for r in got}) == [
        f"{prefix}-boiler.pressure",
        f"{prefix}-boiler.temp",
    ]
    assert {r.unit for r in got} == {"hPa", "Cel"}


ACL_CONFIG = """\
listener {{port}} 127.0.0.1
allow_anonymous true
acl_file {acl}
set_tcp_nodelay true
"""


def test_refused_messages_are_counted_as_failed(
    broker_factory: object, tmp_path: Path, prefix: str
) -> None:
    # Mosquitto reads its ACL after dropping root to the `mosquitto` user: a readable place.
    acl_dir = Path(tempfile.mkdtemp(prefix="sensorpipe-acl-"))
    acl_dir.chmod(0o755)
    acl = acl_dir / "acl"
    acl.write_text("topic read sensors/#\n")  # anonymous clients may read, not write
    acl.chmod(0o644)
    server: MosquittoServer = broker_factory(ACL_CONFIG.format(acl=acl))  # type: ignore[operator]
    run = run_cli(
        "--broker", server.url, "--sensors", "2", "--prefix", prefix, "--count", "4",
        "--start", START.isoformat(),
    )  # fmt: skip
    shutil.rmtree(acl_dir)
    assert run.returncode == 1
    assert summary(run.stdout) == (0, 8, 0)


def test_unreachable_broker_is_a_clear_error() -> None:
    run = run_cli("--broker", "mqtt://127.0.0.1:1", "--count", "1")
    assert run.returncode == 1
    assert "cannot connect to 127.0.0.1:1" in run.stderr


def test_same_seed_same_files_and_labels_match_the_generator(tmp_path: Path) -> None:
    def write(name: str, seed: int) -> tuple[str, str]:
        out, labels = tmp_path / f"{name}.csv", tmp_path / f"{name}-labels.csv"
        run = run_cli(
            "--sensors", "6", "--count", "300", "--rate", "0.1", "--seed", str(seed),
            "--start", "2026-01-01T00:00:00Z", "--anomaly-rate", "0.02",
            "--out", str(out), "--labels", str(labels),
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        return out.read_text(), labels.read_text()

    a, b, c = write("a", 5), write("b", 5), write("c", 6)
    assert a == b
    assert a[0] != c[0] and a[1] != c[1]

    start = datetime(2026, 1, 1, tzinfo=UTC)
    sim = Simulator(make_sensors(6), seed=5, interval_s=10, start=start, anomaly_rate=0.02)
    expected = list(sim.samples(300))
    incidents = sim.close()
    with (tmp_path / "a.csv").open() as fh:
        rows = list(read_readings(fh))
    assert [(key(s.reading), s.anomaly) for s in rows] == [
        (key(s.reading), s.anomaly) for s in expected
    ]
    with (tmp_path / "a-labels.csv").open() as fh:
        assert read_labels(fh) == incidents
    assert {i.kind for i in incidents} >= {"spike", "dropout"}
    # Every labelled (non-dropout) incident covers exactly the readings flagged with its kind.
    flagged = Counter((s.reading.sensor_id, s.anomaly) for s in expected if s.anomaly)
    covered: Counter[tuple[str, str]] = Counter()
    for i in incidents:
        if i.kind != "dropout":
            covered[(i.sensor_id, i.kind)] += int((i.end - i.start) / timedelta(seconds=10)) + 1
    assert covered == flagged


def test_out_needs_a_length() -> None:
    run = run_cli("--out", "/dev/null")
    assert run.returncode == 1
    assert "--out needs --count or --duration" in run.stderr
