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


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(topic: str, payload: bytes, *, flags: int = 0, v5: bool = False) -> bytes:
    """An MQTT PUBLISH packet (QoS 0 unless ``flags`` says otherwise: a QoS 1 one gets id 7)."""
    body = len(topic).to_bytes(2, "big") + topic.encode()
    if flags & 0x06:
        body += (7).to_bytes(2, "big")
    if v5:
        body += _varint(2) + b"\x01\x01"  # properties: the payload format indicator
    body += payload
    return bytes([0x30 | flags]) + _varint(len(body)) + body


SUBACK = bytes([0x90, 3, 0, 1, 0])
PINGRESP = bytes([0xD0, 0])


def _stream() -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """Readings of every size class (1- and 2-byte lengths, an empty payload, the DUP and RETAIN
    bits) with paho's packets between them: ``(stream, publishes, paho's bytes)``."""
    parts: list[bytes] = [SUBACK]
    want: list[tuple[bytes, bytes]] = []
    other = [SUBACK]
    for i in range(40):
        payload = b"x" * (i * 9)  # up to 351 bytes: 2-byte remaining lengths too
        flags = 0x09 if i % 7 == 3 else 0  # DUP and RETAIN set: still QoS 0
        parts.append(publish_packet(f"sensors/s{i}/readings", payload, flags=flags))
        want.append((f"sensors/s{i}/readings".encode(), payload))
        if i % 10 == 5:
            parts.append(PINGRESP)
            other.append(PINGRESP)
    return b"".join(parts), want, b"".join(other)


@pytest.mark.parametrize("cut", [1, 2, 3, 37, 500, 100_000])
def test_framing_delivers_qos0_publishes_and_passes_other_packets_whole(cut: int) -> None:
    stream, want, other = _stream()
    chunks = [stream[k : k + cut] for k in range(0, len(stream), cut)]
    got: list[tuple[bytes, bytes]] = []
    sock = scorer_mqtt.FramingSocket(
        FakeSocket(chunks), lambda t, p: got.append((t, p)), mqtt5=False
    )
    seen = b""
    for _ in range(len(chunks) + 1):
        try:
            seen += sock.recv(1)  # paho's first read of a packet
            while sock.pending() > 0:
                seen += sock.recv(4096)
        except BlockingIOError:
            pass
    assert got == want
    assert seen == other  # paho gets its packets whole and in order, never a reading


def test_framing_leaves_qos1_publishes_and_a_closed_connection_to_paho() -> None:
    qos1 = publish_packet("sensors/a/readings", b"{}", flags=0x02)
    got: list[tuple[bytes, bytes]] = []
    sock = scorer_mqtt.FramingSocket(
        FakeSocket([qos1, b""]), lambda t, p: got.append((t, p)), mqtt5=False
    )
    assert sock.recv(len(qos1)) == qos1 and got == []
    assert sock.recv(10) == b""  # the peer closed: passed through
    with pytest.raises(BlockingIOError):
        sock.recv(1)


@pytest.mark.parametrize(
    "packet",
    [
        bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]) + b"x" * 8,  # a length of five bytes
        bytes([0x30, 5, 0, 9]) + b"abc",  # a topic longer than the packet
    ],
)
def test_framing_leaves_malformed_publishes_to_paho(packet: bytes) -> None:
    got: list[tuple[bytes, bytes]] = []
    sock = scorer_mqtt.FramingSocket(
        FakeSocket([packet]), lambda t, p: got.append((t, p)), mqtt5=False
    )
    assert sock.recv(1) + sock.recv(100) == packet and got == []


def test_framing_skips_mqtt5_properties() -> None:
    packet = publish_packet("sensors/a/readings", b'{"v":1}', v5=True)
    got: list[tuple[bytes, bytes]] = []
    sock = scorer_mqtt.FramingSocket(
        FakeSocket([packet]), lambda t, p: got.append((t, p)), mqtt5=True
    )
    with pytest.raises(BlockingIOError):
        sock.recv(1)  # all of it was a reading: nothing for paho
    assert got == [(b"sensors/a/readings", b'{"v":1}')]


def test_paho_parses_what_the_framing_socket_leaves_it() -> None:
    """paho on top of the framing socket, as aiomqtt's reader drives it: QoS 1 readings come
    through paho's own parser (its callback), QoS 0 ones through the framing socket, both in
    order, with packets cut anywhere by the recv boundaries."""
    packets = [
        publish_packet(f"sensors/s{i}/readings", b"x" * i, flags=0x02 if i % 3 == 0 else 0)
        for i in range(40)
    ]
    stream = b"".join(packets)
    chunks = [stream[k : k + 37] for k in range(0, len(stream), 37)]
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    by_paho: list[tuple[str, bytes]] = []
    client.on_message = lambda _c, _u, m: by_paho.append((m.topic, bytes(m.payload)))
    framed: list[tuple[str, bytes]] = []
    sock = scorer_mqtt.FramingSocket(
        FakeSocket(chunks), lambda t, p: framed.append((t.decode(), p)), mqtt5=False
    )
    client._sock = sock  # the state paho is in after connect
    client._state = ConnectionState.MQTT_CS_CONNECTED
    client._sock_send = lambda buf: len(buf)  # the PUBACKs paho answers QoS 1 with
    for _ in range(len(chunks)):
        client.loop_read()
        while sock.pending() > 0:
            client.loop_read()
    expect = [(f"sensors/s{i}/readings", b"x" * i) for i in range(40)]
    assert by_paho == [e for i, e in enumerate(expect) if i % 3 == 0]
    assert framed == [e for i, e in enumerate(expect) if i % 3]


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
