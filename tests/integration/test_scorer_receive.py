"""The scorer's receive path (``scorer/mqtt.py``) against a real Mosquitto: readings framed by
the socket, everything else through paho, on one connection, in both protocols and at both
subscription QoS levels."""

from __future__ import annotations

import asyncio
import threading

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from scorer import mqtt as scorer_mqtt
from scorer.settings import ScorerSettings
from tests.servers import MosquittoServer

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
            publisher = threading.Thread(target=_publish_all, args=(mqtt.port, sensors))
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
