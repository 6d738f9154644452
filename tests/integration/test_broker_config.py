"""The repository's ``broker/`` configuration, run on the real Mosquitto.

The broker is started exactly as the compose ``broker`` service starts it: ``broker/entrypoint.sh``
builds the password and ACL files from the environment, then execs mosquitto with
``broker/mosquitto.conf``. Only what cannot work outside a container is rewritten (the listener
port, and the /mosquitto paths moved into a temporary directory); every rewrite must match, so a
reshaped config fails here instead of drifting silently.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import TEMPLATE_DB
from tests.servers import REPO, PgServer, free_port, wait_port

pytestmark = pytest.mark.integration

BROKER_DIR = REPO / "broker"
TIMEOUT_S = 10.0
# Users of the test broker; the devices log in with their sensor ids, as DESIGN.md says.
DEVICES = {"dev-a": "pw-a " + secrets.token_hex(4), "dev-b": "pw-b:" + secrets.token_hex(4)}


def _mosquitto_binary() -> str:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists() or not shutil.which("mosquitto_passwd"):
        msg = "mosquitto / mosquitto_passwd are not installed"
        if os.environ.get("SENSORPIPE_REQUIRE_SERVICES") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return binary


def rewrite_config(text: str, port: int, root: Path) -> str:
    """The repository's mosquitto.conf with the container paths and port moved to ``root``."""
    rewrites = {
        "listener 1883": f"listener {port} 127.0.0.1",
        "persistence_location /mosquitto/data/": f"persistence_location {root}/data/",
        "password_file /mosquitto/run/passwd": f"password_file {root}/run/passwd",
        "acl_file /mosquitto/run/acl": f"acl_file {root}/run/acl",
    }
    lines = text.splitlines()
    for old, new in rewrites.items():
        hits = [i for i, line in enumerate(lines) if line.strip() == old]
        assert len(hits) == 1, f"broker/mosquitto.conf must contain the line {old!r} exactly once"
        lines[hits[0]] = new
    return "\n".join(lines) + "\n"


@dataclass
class RepoBroker:
    """Mosquitto started through broker/entrypoint.sh with the repository's config."""

    root: Path
    port: int
    env: dict[str, str]
    passwords: dict[str, str]
    binary: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "broker.log"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    "sh",
                    str(self.root / "config" / "entrypoint.sh"),
                    self.binary,
                    "-c",
                    str(self.root / "mosquitto.conf"),
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_port(self.port, timeout_s=TIMEOUT_S)
        except TimeoutError:
            self.stop(signal.SIGKILL)
            raise AssertionError(f"broker did not start:\n{self.log.read_text()}") from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


def _make_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="sensorpipe-broker-conf-"))
    # Started as root, mosquitto drops to the `mosquitto` user (as in the image): it must be
    # able to reach the run files and write its store.
    root.chmod(0o755)
    (root / "data").mkdir()
    (root / "run").mkdir()
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            pw = pwd.getpwnam("mosquitto")
            os.chown(root / "data", pw.pw_uid, pw.pw_gid)
    return root


def _render_device_acl(pg_server: PgServer, out: Path) -> None:
    """broker/acl.d/ entries for a multi-sensor device, rendered by `sensorpipe acl` from the
    sensor registry, as the operations guide says."""
    db_url = pg_server.create_db(f"acl{os.getpid()}", template=TEMPLATE_DB)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO sensors (sensor_id, device_id) VALUES "
            "('boiler-3.temp', 'boiler-3'), ('boiler-3.pressure', 'boiler-3'), ('dev-a', NULL)"
        )
    env = {**os.environ, "DATABASE_URL": db_url}
    done = subprocess.run(
        [sys.executable, "-m", "sensorpipe", "acl", "--out", str(out)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "user boiler-3\n" in out.read_text()


@pytest.fixture(scope="module")
def repo_broker(pg_server: PgServer) -> Iterator[RepoBroker]:
    binary = _mosquitto_binary()
    root = _make_root()
    # A copy of broker/ so the test can add a rendered device ACL to acl.d/ without touching the
    # working tree; the files are the repository's own.
    shutil.copytree(BROKER_DIR, root / "config")
    (root / "config" / "acl.d").mkdir(exist_ok=True)
    _render_device_acl(pg_server, root / "config" / "acl.d" / "devices.acl")
    port = free_port()
    (root / "mosquitto.conf").write_text(
        rewrite_config((BROKER_DIR / "mosquitto.conf").read_text(), port, root)
    )
    passwords = {
        role: secrets.token_urlsafe(16)
        for role in ("ingestor", "scorer", "api", "alerts", "simulator")
    }
    passwords["boiler-3"] = secrets.token_hex(8)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BROKER_CONFIG_DIR": str(root / "config"),
        "BROKER_RUN_DIR": str(root / "run"),
        "MQTT_DEVICES_FILE": str(root / "devices"),
        **{
            f"MQTT_{role.upper()}_PASSWORD": pw
            for role, pw in passwords.items()
            if role in ("ingestor", "scorer", "api", "alerts", "simulator")
        },
        # Device credentials from both sources the entrypoint supports.
        "MQTT_DEVICES": " ".join(f"{u}:{p}" for u, p in DEVICES.items() if " " not in p),
    }
    # dev-a's password has a space, so it comes from the devices file (one entry a line).
    (root / "devices").write_text(
        "# device credentials\n"
        + "".join(f"{u}:{p}\n" for u, p in DEVICES.items() if " " in p)
        + f"boiler-3:{passwords['boiler-3']}\n"
    )
    broker = RepoBroker(
        root=root, port=port, env=env, passwords={**passwords, **DEVICES}, binary=binary
    )
    broker.start()
    yield broker
    broker.stop(signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)


class Client:
    """A small synchronous wrapper over paho-mqtt (MQTT v5) for assertions."""

    def __init__(
        self,
        broker: RepoBroker,
        user: str | None,
        password: str | None = None,
        *,
        client_id: str | None = None,
        clean_start: bool = True,
        will_topic: str | None = None,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{secrets.token_hex(4)}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if user is not None:
            self.client.username_pw_set(
                user, password if password is not None else broker.passwords[user]
            )
        if will_topic is not None:
            self.client.will_set(will_topic, b"offline", qos=1, retain=True)
        self.connack: queue.Queue[int] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.acks: dict[int, int] = {}
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self._acked = threading.Condition()
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(rc.value)
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = lambda _c, _u, _mid, rcs, _p: self.subacks.put(
            [rc.value for rc in rcs]
        )
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0 if clean_start else 3600
        self.client.connect(
            "127.0.0.1", broker.port, keepalive=30, clean_start=clean_start, properties=props
        )
        self.client.loop_start()
        self.rc = self.connack.get(timeout=TIMEOUT_S)

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: object, _p: object) -> None:
        with self._acked:
            self.acks[mid] = int(getattr(rc, "value", 0))
            self._acked.notify_all()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Publish and wait for the PUBACK; return its MQTT v5 reason code."""
        info = self.client.publish(topic, payload, qos=qos)
        with self._acked:
            assert self._acked.wait_for(lambda: info.mid in self.acks, timeout=TIMEOUT_S), (
                f"no PUBACK for {topic}"
            )
            return self.acks[info.mid]

    def subscribe(self, topic: str, qos: int = 1) -> list[int]:
        self.client.subscribe(topic, qos=qos)
        return self.subacks.get(timeout=TIMEOUT_S)

    def receive_until(self, sentinel_topic: str) -> list[tuple[str, bytes]]:
        """Messages received up to and including the first one on ``sentinel_topic``."""
        got: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                msg = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            got.append(msg)
            if msg[0] == sentinel_topic:
                return got
        raise AssertionError(f"sentinel {sentinel_topic} not received; got {got}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def connected(
    broker: RepoBroker, user: str | None, password: str | None = None, **kw: object
) -> Iterator[Client]:
    c = Client(broker, user, password, **kw)  # type: ignore[arg-type]
    try:
        yield c
    finally:
        c.close()


SUCCESS = 0
NOT_AUTHORIZED = 0x87
BAD_CREDENTIALS = 0x86


def test_anonymous_and_wrong_passwords_are_refused(repo_broker: RepoBroker) -> None:
    with connected(repo_broker, None) as anon:
        assert anon.rc in (NOT_AUTHORIZED, BAD_CREDENTIALS)
    with connected(repo_broker, "ingestor", "not-the-password") as wrong:
        assert wrong.rc in (NOT_AUTHORIZED, BAD_CREDENTIALS)
    with connected(repo_broker, "nobody", "whatever") as unknown:
        assert unknown.rc in (NOT_AUTHORIZED, BAD_CREDENTIALS)
    with connected(repo_broker, "dev-a") as ok:
        assert ok.rc == SUCCESS


def test_passwords_from_env_and_devices_file_all_work(repo_broker: RepoBroker) -> None:
    """Every user the entrypoint generated logs in (passwords with ':' and ' ' included)."""
    for user in ("ingestor", "scorer", "api", "alerts", "simulator", "dev-a", "dev-b", "boiler-3"):
        with connected(repo_broker, user) as c:
            assert c.rc == SUCCESS, user
    passwd = (repo_broker.root / "run" / "passwd").read_text()
    assert all(secret not in passwd for secret in repo_broker.passwords.values()), "not hashed"
    assert not (repo_broker.root / "run" / "passwd.plain").exists()


def test_broker_logs_are_visible_as_they_happen(repo_broker: RepoBroker) -> None:
    """`docker compose logs broker` shows connections live (not block-buffered until exit)."""
    cid = f"log-probe-{secrets.token_hex(3)}"
    with connected(repo_broker, "alerts", client_id=cid) as c:
        assert c.rc == SUCCESS
        deadline = time.monotonic() + TIMEOUT_S
        while cid not in repo_broker.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert f"as {cid}" in repo_broker.log.read_text()
    assert "u'alerts'" in repo_broker.log.read_text()


def test_device_cannot_publish_to_another_devices_topic(repo_broker: RepoBroker) -> None:
    """dev-a's publish to dev-b's topic is refused and never reaches the ingestors' shared
    subscription, while its own topic is delivered."""
    with connected(repo_broker, "ingestor") as ingestor, connected(repo_broker, "dev-a") as dev:
        assert ingestor.subscribe("$share/ingestors/sensors/+/readings") == [1]
        assert dev.publish("sensors/dev-b/readings", b'{"spoofed": true}') == NOT_AUTHORIZED
        assert dev.publish("alerts/dev-b", b"fake alert") == NOT_AUTHORIZED
        assert dev.publish("sensors/dev-a/readings", b'{"own": true}') == SUCCESS
        # A device may write only its own topics, so its sentinel is on its own topic too;
        # messages of one publisher arrive in order, so the sentinel closes the window.
        assert dev.publish("sensors/dev-a/readings", b"sentinel") == SUCCESS
        got = ingestor.receive_until("sensors/dev-a/readings")
        got += ingestor.receive_until("sensors/dev-a/readings")
    assert [t for t, _ in got] == ["sensors/dev-a/readings", "sensors/dev-a/readings"]
    assert all(b"spoofed" not in payload for _, payload in got)


def test_multi_sensor_device_writes_only_its_listed_sensors(repo_broker: RepoBroker) -> None:
    with connected(repo_broker, "scorer") as scorer, connected(repo_broker, "boiler-3") as dev:
        assert scorer.subscribe("sensors/+/readings") == [1]
        assert dev.publish("sensors/boiler-3.temp/readings", b"t") == SUCCESS
        assert dev.publish("sensors/boiler-4.temp/readings", b"x") == NOT_AUTHORIZED
        assert dev.publish("sensors/boiler-3.pressure/readings", b"p") == SUCCESS
        got = scorer.receive_until("sensors/boiler-3.pressure/readings")
    assert [t for t, _ in got] == [
        "sensors/boiler-3.temp/readings",
        "sensors/boiler-3.pressure/readings",
    ]


def test_pipeline_users_work_and_alert_subscribers_only_read(repo_broker: RepoBroker) -> None:
    with (
        connected(repo_broker, "alerts") as alerts,
        connected(repo_broker, "dev-b") as device,
        connected(repo_broker, "scorer", will_topic="sensorpipe/status/scorer") as scorer,
        connected(repo_broker, "api", will_topic="sensorpipe/status/api") as api,
        connected(repo_broker, "ingestor", will_topic="sensorpipe/status/ingestor") as ing,
    ):
        assert alerts.subscribe("alerts/#") == [1]
        # A device may subscribe but receives nothing it may not read.
        device.subscribe("alerts/#")
        assert ing.subscribe("$share/ingestors/sensors/+/senml") == [1]
        assert scorer.subscribe("sensors/+/readings") == [1]
        # The dashboard's live stream: the API reads readings and alerts as well.
        assert api.subscribe("sensors/+/readings") == [1]
        assert api.subscribe("alerts/+") == [1]
        assert api.publish("sensors/http-sensor/readings", b"via http") == SUCCESS
        assert scorer.receive_until("sensors/http-sensor/readings")[-1][1] == b"via http"
        assert api.receive_until("sensors/http-sensor/readings")[-1][1] == b"via http"
        # 0x10: accepted, no subscriber for it yet (an MQTT v5 success code).
        assert scorer.publish("sensorpipe/status/scorer", b"online") in (SUCCESS, 0x10)
        assert scorer.publish("alerts/dev-b", b'{"state": "open"}') == SUCCESS
        assert alerts.receive_until("alerts/dev-b")[-1][1] == b'{"state": "open"}'
        assert api.receive_until("alerts/dev-b")[-1][1] == b'{"state": "open"}'
        # Least privilege: nobody but the scorer writes alerts, alert readers write nothing.
        assert ing.publish("alerts/dev-b", b"x") == NOT_AUTHORIZED
        assert alerts.publish("alerts/dev-b", b"x") == NOT_AUTHORIZED
        assert alerts.publish("sensors/dev-b/readings", b"x") == NOT_AUTHORIZED
        assert ing.publish("sensors/dev-b/readings", b"x") == NOT_AUTHORIZED
        # Ordering sentinel for the device: the scorer's next alert reaches `alerts`; by then
        # the first one would have reached the device too, had it been allowed to read.
        assert scorer.publish("alerts/dev-b", b"sentinel") == SUCCESS
        alerts.receive_until("alerts/dev-b")
        time.sleep(0.2)
        assert device.messages.empty(), "a device read alerts it has no right to"


def test_healthcheck_script_passes_against_the_running_broker(repo_broker: RepoBroker) -> None:
    env = {**repo_broker.env, "BROKER_HEALTH_PORT": str(repo_broker.port)}
    ok = subprocess.run(
        ["sh", str(BROKER_DIR / "healthcheck.sh")], env=env, capture_output=True, timeout=30
    )
    assert ok.returncode == 0, ok.stderr
    (repo_broker.root / "wrong").mkdir(exist_ok=True)
    (repo_broker.root / "wrong" / "healthcheck").write_text("not-the-password")
    bad = subprocess.run(
        ["sh", str(BROKER_DIR / "healthcheck.sh")],
        env={**env, "BROKER_RUN_DIR": str(repo_broker.root / "wrong")},
        capture_output=True,
        timeout=30,
    )
    assert bad.returncode != 0


def test_entrypoint_refuses_missing_secrets_and_bad_user_names(tmp_path: Path) -> None:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BROKER_CONFIG_DIR": str(BROKER_DIR),
        "BROKER_RUN_DIR": str(tmp_path / "run"),
        "MQTT_DEVICES_FILE": str(tmp_path / "none"),
        "MQTT_INGESTOR_PASSWORD": "a",
        "MQTT_SCORER_PASSWORD": "b",
        "MQTT_API_PASSWORD": "c",
    }
    missing = subprocess.run(
        ["sh", str(BROKER_DIR / "entrypoint.sh"), "true"],
        env=base,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode != 0 and "MQTT_ALERTS_PASSWORD" in missing.stderr
    (tmp_path / "alerts_pw").write_text("d")
    from_file = {**base, "MQTT_ALERTS_PASSWORD_FILE": str(tmp_path / "alerts_pw")}
    ok = subprocess.run(
        ["sh", str(BROKER_DIR / "entrypoint.sh"), "true"],
        env=from_file,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0, ok.stderr
    users = [line.split(":")[0] for line in (tmp_path / "run" / "passwd").read_text().splitlines()]
    assert users == ["ingestor", "scorer", "api", "alerts", "healthcheck"]  # no simulator
    for bad_user in ("a/b", "+", "dev#1", "dev a", "ingestor"):
        bad = subprocess.run(
            ["sh", str(BROKER_DIR / "entrypoint.sh"), "true"],
            env={**from_file, "MQTT_DEVICES": f"{bad_user}:pw"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        # "dev a" splits into two entries, "dev" without a password; "ingestor" is taken.
        assert bad.returncode != 0, bad_user


def test_queued_messages_survive_a_broker_restart(repo_broker: RepoBroker) -> None:
    """Persistence as configured: an offline ingestor session keeps its queue across a graceful
    broker restart (SIGTERM saves the store)."""
    cid = f"ingestor-{secrets.token_hex(3)}"
    with connected(repo_broker, "ingestor", client_id=cid, clean_start=False) as ing:
        assert ing.subscribe("$share/ingestors/sensors/+/readings") == [1]
    with connected(repo_broker, "dev-a") as dev:
        for i in range(5):
            assert dev.publish("sensors/dev-a/readings", f"queued-{i}".encode()) == SUCCESS
    repo_broker.stop(signal.SIGTERM)
    repo_broker.start()
    with connected(repo_broker, "ingestor", client_id=cid, clean_start=False) as ing:
        payloads: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(payloads) < 5 and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                payloads.append(ing.messages.get(timeout=0.5)[1])
    assert payloads == [f"queued-{i}".encode() for i in range(5)]


def test_plain_subscription_is_restored_after_a_restart(repo_broker: RepoBroker) -> None:
    """The ingestor's default (INGEST_SHARE_GROUP empty): a persistent plain subscription comes
    back from the store, so readings published after a broker restart, before the ingestor has
    reconnected, are queued for it instead of going nowhere."""
    cid = f"ingestor-plain-{secrets.token_hex(3)}"
    with connected(repo_broker, "ingestor", client_id=cid, clean_start=False) as ing:
        assert ing.subscribe("sensors/+/readings") == [1]
    repo_broker.stop(signal.SIGTERM)
    repo_broker.start()
    with connected(repo_broker, "dev-b") as dev:
        for i in range(3):
            assert dev.publish("sensors/dev-b/readings", f"after-restart-{i}".encode()) == SUCCESS
    with connected(repo_broker, "ingestor", client_id=cid, clean_start=False) as ing:
        payloads: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(payloads) < 3 and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                payloads.append(ing.messages.get(timeout=0.5)[1])
        # Leave no persistent session behind for the other tests.
        ing.client.unsubscribe("sensors/+/readings")
    assert payloads == [f"after-restart-{i}".encode() for i in range(3)]


def test_spoofed_reading_never_becomes_a_row(
    repo_broker: RepoBroker, db_url: str, tmp_path: Path
) -> None:
    """End to end with the real ingestor logged in as `ingestor`: dev-a's reading for dev-b is
    stopped by the broker ACL (no row), a payload naming another sensor on dev-a's own topic is
    rejected by the ingestor (kept in rejected_messages, no row), dev-a's own reading is stored."""
    from datetime import UTC, datetime

    from core.wire import Reading, encode_reading
    from tests.e2e.pipeline import Pipeline

    url = f"mqtt://ingestor:{repo_broker.passwords['ingestor']}@127.0.0.1:{repo_broker.port}"
    pipe = Pipeline(db_url, url, tmp_path / "models", tmp_path)
    pipe.start("ingest", "ingest")
    try:
        pipe.wait_ready("ingest", pipe.ports["INGEST_METRICS_PORT"])
        now = datetime.now(UTC)
        with connected(repo_broker, "dev-a") as dev:
            spoof = encode_reading(Reading(sensor_id="dev-b", time=now, value=666.0))
            assert dev.publish("sensors/dev-b/readings", spoof) == NOT_AUTHORIZED
            assert dev.publish("sensors/dev-a/readings", spoof) == SUCCESS
            own = encode_reading(Reading(sensor_id="dev-a", time=now, value=21.5))
            assert dev.publish("sensors/dev-a/readings", own) == SUCCESS
        pipe.wait_rows(1)
        deadline = time.monotonic() + TIMEOUT_S
        while pipe.count("SELECT count(*) FROM rejected_messages") < 1:
            assert time.monotonic() < deadline, pipe.log("ingest")
            time.sleep(0.1)
        with psycopg.connect(db_url) as conn:
            rows = conn.execute("SELECT sensor_id, value FROM sensor_readings").fetchall()
            rejected = conn.execute("SELECT topic FROM rejected_messages").fetchall()
        assert rows == [("dev-a", 21.5)]
        assert rejected == [("sensors/dev-a/readings",)]
    finally:
        pipe.stop()
