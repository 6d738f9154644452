"""The scorer's MQTT client (aiomqtt v2 over paho-mqtt 2).

Why aiomqtt rather than bare paho here (the ingestor uses paho for its manual acks): the scorer
never needs to hold an acknowledgement back. Its state is rebuilt from the database on start, so
it runs a *clean* session and a reading it loses in a crash costs nothing that the warm start does
not restore. What it does need is an asyncio client that shares one event loop with the database
pool and awaits PUBACK for each alert it publishes, which is aiomqtt's shape.

aiomqtt's incoming queue discards messages when full and only logs it; ``counting_queue`` makes
that drop visible as a metric (and silences the per-message log line, which would flood the log
exactly when the process is overloaded).

Three measured shortcuts on the receive path (docs/perf/scorer.md), all on the one paho client
aiomqtt wraps and all confined to this module:

* ``tap_messages``: readings go straight to the scorer's callback on the event loop thread.
  aiomqtt's own path builds a second message object, queues it, and wakes the iterating task
  through a new task and ``asyncio.wait`` per message; that was about a third of the event
  loop's time per reading.
* ``FramingSocket``: the readings themselves never reach paho. paho reads each packet with two to
  four ``recv`` calls (one byte of command, the length one byte at a time, then the body) and
  then builds a message object and dispatches its callbacks; that was 43 % of the event loop's
  time at 1,000 readings/s. The socket paho reads from now makes one large ``recv``, cuts it
  into packets, hands each QoS 0 PUBLISH (the scorer's subscription) to the scorer directly,
  and leaves every other packet whole for paho, served from memory; its ``pending()`` makes
  aiomqtt's reader keep parsing until that buffer is empty (the hook aiomqtt has for TLS
  sockets, which buffer the same way).
* ``core.runtime.no_garbage_per_message`` (applied by ``tap_messages``): paho's lookup of
  per-topic callbacks leaves a reference cycle behind for every message; skipped while there
  are none, which removed the scorer's 35 ms collector pauses at 5,000 messages/s. Since the
  framing socket it only matters for a QoS 1 subscription, whose PUBLISH packets paho parses.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from core.runtime import no_garbage_per_message
from core.settings import Settings
from core.topics import status_topic

COMPONENT = "scorer"


def component_name(shard: tuple[int, int]) -> str:
    """``scorer`` for a single process; ``scorer-<i>of<N>`` per shard, so one shard going
    offline does not overwrite the retained status of the others."""
    index, count = shard
    return COMPONENT if count == 1 else f"{COMPONENT}-{index}of{count}"


ONLINE = b"online"
OFFLINE = b"offline"
# One recv per socket wake-up: about 600 single-reading PUBLISH packets.
READ_SIZE = 64 * 1024


def counting_queue(on_drop: Callable[[], None]) -> type[asyncio.Queue[aiomqtt.Message]]:
    """An ``asyncio.Queue`` class that calls ``on_drop`` instead of raising when full."""

    class CountingQueue(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            try:
                super().put_nowait(item)
            except asyncio.QueueFull:
                on_drop()

    return CountingQueue


def _protocol(protocol: str) -> dict[str, Any]:
    """aiomqtt arguments for a clean session in MQTT 5 (clean start) or 3.1.1 (clean session).

    The scorer uses no MQTT 5 feature (no shared subscription, no properties), and paho builds a
    ``Properties`` object for every PUBLISH received over MQTT 5: the largest single cost per
    message in a profile of the scorer. 3.1.1 skips it (docs/perf/scorer.md).
    """
    if protocol == "3.1.1":
        return {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": True}
    return {"protocol": aiomqtt.ProtocolVersion.V5, "clean_start": True}


def make_client(
    settings: Settings,
    *,
    client_id: str,
    component: str,
    protocol: str,
    queue_size: int,
    on_drop: Callable[[], None],
) -> aiomqtt.Client:
    """One reusable client: clean session, TCP_NODELAY, retained last will ``offline``."""
    target = settings.mqtt
    tls_params = None
    if target.tls:
        tls_params = aiomqtt.TLSParameters(
            ca_certs=settings.mqtt_tls_ca_file,
            certfile=settings.mqtt_tls_cert_file,
            keyfile=settings.mqtt_tls_key_file,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    return aiomqtt.Client(
        target.host,
        target.port,
        username=target.username,
        password=target.password,
        identifier=client_id,
        # Clean session on every connect: nothing in a stale session is worth replaying.
        **_protocol(protocol),
        keepalive=settings.mqtt_keepalive_s,
        will=aiomqtt.Will(status_topic(component), OFFLINE, qos=1, retain=True),
        queue_type=counting_queue(on_drop),
        max_queued_incoming_messages=queue_size,
        tls_params=tls_params,
        tls_insecure=settings.mqtt_tls_insecure if target.tls else None,
        # Without TCP_NODELAY an alert (a small packet) can sit in Nagle's buffer for ~40 ms.
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )


class FramingSocket:
    """A socket that cuts what it receives into MQTT packets itself (see the module docstring).

    One large ``recv`` per socket wake-up. Every complete QoS 0 PUBLISH in it goes straight to
    ``on_publish(topic, payload)`` (topic as raw bytes); every other packet (CONNACK, SUBACK, the
    PUBACKs of alerts, PINGRESP, a QoS 1 PUBLISH) is kept whole for paho, whose ``recv`` calls are
    served from memory. paho therefore only ever sees complete packets, in their order, and a
    packet cut by a ``recv`` boundary waits in ``_tail`` for the rest. Everything but ``recv`` and
    ``pending`` is delegated to the wrapped socket.
    """

    def __init__(
        self,
        sock: Any,  # a socket or an SSL socket
        on_publish: Callable[[bytes, bytes], None],
        *,
        mqtt5: bool,
        on_bytes: Callable[[], None] = lambda: None,
    ) -> None:
        self._sock = sock
        self._on_publish = on_publish
        self._mqtt5 = mqtt5
        self._on_bytes = on_bytes
        self._tail = b""  # the start of a packet whose end has not arrived yet
        self._buf = b""  # complete packets for paho
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            # May raise BlockingIOError / SSLWantReadError: paho handles both, as before.
            data: bytes = self._sock.recv(max(bufsize, READ_SIZE))
            if not data:  # the peer closed: paho sees it as always
                return data
            self._on_bytes()
            self._buf, self._pos = self._frame(self._tail + data if self._tail else data), 0
            if not self._buf:
                # All of it went to on_publish (or waits in _tail): nothing for paho to read.
                raise BlockingIOError
        pos = self._pos
        end = min(pos + bufsize, len(self._buf))
        self._pos = end
        return self._buf[pos:end]

    def _frame(self, data: bytes) -> bytes:
        """Deliver the complete QoS 0 PUBLISH packets of ``data``; return the other complete
        packets, in order; keep an incomplete last packet in ``_tail``."""
        keep: list[bytes] = []
        n, i = len(data), 0
        while i < n:
            # Fixed header: the packet type byte, then the remaining length.
            length, j = _varint(data, i + 1, n)
            if length == _CUT_OFF:
                break
            if length == _MALFORMED:  # all of it to paho, which reports the protocol error
                keep.append(data[i:])
                i = n
                break
            end = j + length
            if end > n:
                break
            # 0x30: PUBLISH with QoS 0 (bits 1-2 clear); DUP and RETAIN (bits 3 and 0) are free.
            if data[i] & 0xF6 == 0x30 and length >= 2:
                t_end = j + 2 + ((data[j] << 8) | data[j + 1])
                body = t_end
                if self._mqtt5:  # skip the properties: their length, then them
                    plen, body = _varint(data, t_end, end)
                    body = body + plen if plen >= 0 else end + 1  # bad: paho judges it
                if body <= end:
                    self._on_publish(data[j + 2 : t_end], data[body:end])
                    i = end
                    continue
            keep.append(data[i:end])  # not ours, or a PUBLISH too short: paho judges it
            i = end
        self._tail = data[i:]
        return b"".join(keep)

    def pending(self) -> int:
        """Bytes readable without the socket becoming readable again (buffer + TLS layer)."""
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + int(inner)

    def __getattr__(self, name: str) -> Any:  # delegation
        return getattr(self._sock, name)


_CUT_OFF, _MALFORMED = -1, -2


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The MQTT variable byte integer at ``data[pos:end]`` (7 bits a byte, low first, at most
    four bytes) and the position after it; the value is ``_CUT_OFF`` if ``end`` comes first,
    ``_MALFORMED`` if it runs past four bytes."""
    value, shift = 0, 0
    while pos < end:
        if shift > 21:
            return _MALFORMED, pos
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return _CUT_OFF, pos


def tap_messages(
    client: aiomqtt.Client,
    on_message: Callable[[str, bytes], None],
    on_bad_topic: Callable[[], None],
) -> None:
    """Deliver each received PUBLISH as ``on_message(topic, payload)`` on the event loop thread,
    instead of through ``client.messages``: QoS 0 ones from every connection's ``FramingSocket``,
    any other (a QoS 1 subscription) from paho's parser.

    ``on_message`` must not raise: paho re-raises a callback's exception, and aiomqtt would take
    it for a broken connection. A topic that is not UTF-8 is counted by ``on_bad_topic``.
    """
    # Private attributes: aiomqtt and paho expose no hook for this (paho-mqtt is pinned < 3).
    inner: paho.Client = client._client
    no_garbage_per_message(inner)

    def deliver(_client: paho.Client, _userdata: object, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            on_bad_topic()
            return
        payload = msg.payload
        on_message(topic, payload if isinstance(payload, bytes) else bytes(payload))

    inner.on_message = deliver

    def publish(topic: bytes, payload: bytes) -> None:
        try:
            name = topic.decode()
        except UnicodeDecodeError:
            on_bad_topic()
            return
        on_message(name, payload)

    def received() -> None:
        # paho's keepalive watches the time of the last bytes it read; these bypass it.
        inner._last_bytes_received = paho.time_func()

    create = inner._create_socket
    mqtt5 = inner._protocol == paho.MQTTv5

    def create_framing() -> Any:  # paho's SocketLike
        return FramingSocket(create(), publish, mqtt5=mqtt5, on_bytes=received)

    # An instance attribute shadows the method: paho calls self._create_socket() on connect.
    setattr(inner, "_create_socket", create_framing)  # noqa: B010
