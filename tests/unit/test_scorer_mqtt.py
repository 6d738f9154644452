"""The scorer's receive shortcuts (scorer/mqtt.py) against paho's own reading of packets."""

from __future__ import annotations

import asyncio

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.enums import _ConnectionState as ConnectionState

from scorer import mqtt as scorer_mqtt


class FakeSocket:
    """Hands out prepared chunks, like a non-blocking socket; records the sizes asked for."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.asked: list[int] = []
        self.closed = False

    def recv(self, bufsize: int) -> bytes:
        self.asked.append(bufsize)
        if not self.chunks:
            raise BlockingIOError
        chunk = self.chunks.pop(0)
        assert len(chunk) <= bufsize
        return chunk

    def close(self) -> None:
        self.closed = True


def publish_packet(topic: str, payload: bytes) -> bytes:
    """An MQTT 3.1.1 QoS 0 PUBLISH packet."""
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    assert len(body) < 128
    return bytes([0x30, len(body)]) + body


def test_small_reads_come_from_one_large_recv_and_short_reads_stay_valid() -> None:
    inner = FakeSocket([b"abcdef", b"gh", b""])
    sock = scorer_mqtt.BufferedSocket(inner)
    assert sock.recv(1) == b"a"
    assert inner.asked == [scorer_mqtt.READ_SIZE]
    assert sock.pending() == 5
    assert [sock.recv(2), sock.recv(10)] == [b"bc", b"def"]  # a short read, as recv may give
    assert sock.pending() == 0
    assert sock.recv(10) == b"gh"  # fits: handed over without buffering
    assert sock.recv(10) == b""  # the peer closed: passed through
    with pytest.raises(BlockingIOError):
        sock.recv(1)
    sock.close()  # delegated
    assert inner.closed


def test_paho_parses_packets_split_anywhere_through_the_buffer() -> None:
    stream = b"".join(publish_packet(f"sensors/s{i}/readings", b"x" * i) for i in range(40))
    chunks = [stream[k : k + 37] for k in range(0, len(stream), 37)]  # cuts inside packets
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    got: list[tuple[str, bytes]] = []
    client.on_message = lambda _c, _u, m: got.append((m.topic, bytes(m.payload)))
    sock = scorer_mqtt.BufferedSocket(FakeSocket(chunks))
    client._sock = sock  # the state paho is in after connect
    client._state = ConnectionState.MQTT_CS_CONNECTED
    # What aiomqtt's reader does each time the socket is readable.
    for _ in range(len(chunks)):
        client.loop_read()
        while sock.pending() > 0:
            client.loop_read()
    assert got == [(f"sensors/s{i}/readings", b"x" * i) for i in range(40)]


def test_tap_delivers_topic_and_payload_and_counts_undecodable_topics() -> None:
    async def build() -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", 1883, identifier="t")

    client = asyncio.run(build())
    got: list[tuple[str, bytes]] = []
    bad: list[int] = []
    scorer_mqtt.tap_messages(client, lambda t, p: got.append((t, p)), lambda: bad.append(1))
    ok = paho.MQTTMessage(topic=b"sensors/a/readings")
    ok.payload = b"{}"
    broken = paho.MQTTMessage(topic=b"sensors/\xff/readings")
    inner = client._client
    for msg in (ok, broken):
        inner._handle_on_message(msg)
    assert got == [("sensors/a/readings", b"{}")] and bad == [1]
    assert len(client.messages) == 0  # nothing went through aiomqtt's queue
