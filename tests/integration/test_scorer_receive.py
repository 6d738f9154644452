"""The scorer's receive path (``scorer/mqtt.py``) against a real Mosquitto: readings framed by
the socket, everything else through paho, on one connection, in both protocols and at both
subscription QoS levels, and over TLS."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from scorer import mqtt as scorer_mqtt
from scorer.settings import ScorerSettings
from tests.servers import MosquittoServer, free_port

N = 2_000
# Sizes around the framing's edges: 1- and 2-byte remaining lengths, an empty payload, and
# packets larger than one socket read (64 KiB), which arrive over several.
SIZES = (0, 10, 120, 200, 3_000, 70_000, 300_000)


def _payload(i: int) -> bytes:
    """Reading i's payload: mostly 40-130 bytes, every 50th one of the edge sizes."""
    size = SIZES[(i // 50) % len(SIZES)] if i % 50 == 0 else 40 + i % 90
    return f"{i}:".encode().ljust(size, b"x") if size else b""


def _publish_all(port: int, sensors: int) -> None:
    """A separate paho client: N QoS 1 readings round-robin over ``sensors`` topics."""
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="receive-test-pub")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        infos = [
            pub.publish(f"sensors/s{i % sensors}/readings", _payload(i), qos=1) for i in range(N)
        ]
        for info in infos:
            info.wait_for_publish(timeout=60)
    finally:
        pub.loop_stop()
        pub.disconnect()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
@pytest.mark.parametrize("qos", [0, 1])
def test_every_reading_arrives_whole_and_in_order_beside_paho_traffic(
    mqtt: MosquittoServer, protocol: str, qos: int
) -> None:
    settings = ScorerSettings(database_url="postgresql://unused", mqtt_url=mqtt.url)
    _receive_all(settings, mqtt.port, protocol, qos)


# A TLS listener for the scorer's client and a plain one for the publisher, on one broker.
TLS_BROKER = """\
listener {port} 127.0.0.1
cafile {certs}/ca.crt
certfile {certs}/server.crt
keyfile {certs}/server.key
listener {plain_port} 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 1000000
max_queued_bytes 0
"""


def _make_certs(root: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is not installed (scripts/system-deps.sh installs it)"

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=root, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (root / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
    for f in root.iterdir():  # mosquitto, started as root, reads them as its own user
        f.chmod(0o644)


@pytest.fixture(scope="module")
def certs() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parents are private to root, and mosquitto reads the
    # files as its own user.
    root = Path(tempfile.mkdtemp(prefix="sensorpipe-tls-"))
    root.chmod(0o755)
    try:
        _make_certs(root)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_readings_arrive_whole_and_in_order_over_tls(
    broker_factory: Callable[..., MosquittoServer], certs: Path, protocol: str
) -> None:
    """Over TLS a ``recv`` returns at most one TLS record (16 KiB) and raises
    ``SSLWantReadError`` while a record is only partly in: readings many records long, and
    paho's own packets between them, must still come through whole. (Checked that it can fail:
    it does when the framing socket takes ``SSLWantReadError`` for a closed connection.)"""
    plain_port = free_port()
    server = broker_factory(
        TLS_BROKER.replace("{certs}", str(certs)).replace("{plain_port}", str(plain_port))
    )
    settings = ScorerSettings(
        database_url="postgresql://unused",
        mqtt_url=f"mqtts://127.0.0.1:{server.port}",
        mqtt_tls_ca_file=str(certs / "ca.crt"),
    )
    _receive_all(settings, plain_port, protocol, 0)


def _receive_all(settings: ScorerSettings, publish_port: int, protocol: str, qos: int) -> None:
    """N readings published on ``publish_port`` and 20 alerts published by the client itself
    all reach the tapped client whole, in order per topic, with every alert acknowledged."""
    sensors = 7
    got: list[tuple[str, bytes]] = []
    bad: list[int] = []

    async def run() -> int:
        client = scorer_mqtt.make_client(
            settings,
            client_id=f"receive-test-{protocol}-{qos}",
            component="receive-test",
            protocol=protocol,
            queue_size=10,
            on_drop=lambda: None,
        )
        scorer_mqtt.tap_messages(client, lambda t, p: got.append((t, p)), lambda: bad.append(1))
        acked = 0
        async with client:
            await client.subscribe([("sensors/+/readings", qos), ("alerts/+", qos)])
            publisher = threading.Thread(target=_publish_all, args=(publish_port, sensors))
            publisher.start()
            # While readings stream in, publish alerts at QoS 1 and wait for each PUBACK: paho's
            # own packets between framed ones. They come back on the alerts subscription.
            for k in range(20):
                await client.publish(f"alerts/s{k % sensors}", f"alert {k}".encode(), qos=1)
                acked += 1
                await asyncio.sleep(0.01)
            await asyncio.to_thread(publisher.join, 120)
            for _ in range(600):  # bounded: up to 60 s for the last readings
                if len(got) >= N + 20:
                    break
                await asyncio.sleep(0.1)
        return acked

    acked = asyncio.run(run())
    assert acked == 20 and not bad
    readings = [(t, p) for t, p in got if t.startswith("sensors/")]
    alerts = [(t, p) for t, p in got if t.startswith("alerts/")]
    assert len(readings) == N and len(alerts) == 20
    for s in range(sensors):  # MQTT keeps the order per topic
        want = [_payload(i) for i in range(N) if i % sensors == s]
        assert [p for t, p in readings if t == f"sensors/s{s}/readings"] == want
    assert [p for _, p in alerts] == [f"alert {k}".encode() for k in range(20)]
