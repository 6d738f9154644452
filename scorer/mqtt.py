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

* ``tap_messages``: readings go from paho's parser straight to the scorer's callback on the event
  loop thread. aiomqtt's own path builds a second message object, queues it, and wakes the
  iterating task through a new task and ``asyncio.wait`` per message; that was about a third of
  the event loop's time per reading.
* ``BufferedSocket``: paho reads each packet with two to four ``recv`` calls (one byte of
  command, the length one byte at a time, then the body). One large ``recv`` serves them all from
  memory; its ``pending()`` makes aiomqtt's reader keep parsing until the buffer is empty (the
  hook aiomqtt has for TLS sockets, which buffer the same way).
* ``core.runtime.no_garbage_per_message`` (applied by ``tap_messages``): paho's lookup of
  per-topic callbacks leaves a reference cycle behind for every message; skipped while there
  are none, which removed the scorer's 35 ms collector pauses at 5,000 messages/s.
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


class BufferedSocket:
    """A socket whose small reads are served from one large ``recv`` (see the module docstring).

    Only ``recv`` and ``pending`` differ from the wrapped socket; everything else is delegated.
    A short read is still a valid ``recv`` result, so paho's partial-packet handling is unchanged.
    """

    def __init__(self, sock: Any) -> None:  # a socket or an SSL socket
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            # May raise BlockingIOError / SSLWantReadError: paho handles both, as before.
            data: bytes = self._sock.recv(max(bufsize, READ_SIZE))
            if len(data) <= bufsize:  # also b"" (connection closed)
                return data
            self._buf, self._pos = data, bufsize
            return data[:bufsize]
        end = min(pos + bufsize, len(buf))
        self._pos = end
        return buf[pos:end]

    def pending(self) -> int:
        """Bytes readable without the socket becoming readable again (buffer + TLS layer)."""
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + int(inner)

    def __getattr__(self, name: str) -> Any:  # delegation
        return getattr(self._sock, name)


def buffer_reads(client: aiomqtt.Client) -> None:
    """Make every connection of ``client`` read through a ``BufferedSocket``."""
    # Private attributes: aiomqtt and paho expose no hook for this (paho-mqtt is pinned < 3).
    inner: paho.Client = client._client
    create = inner._create_socket

    def create_buffered() -> Any:  # paho's SocketLike
        return BufferedSocket(create())

    # An instance attribute shadows the method: paho calls self._create_socket() on connect.
    setattr(inner, "_create_socket", create_buffered)  # noqa: B010


def tap_messages(
    client: aiomqtt.Client,
    on_message: Callable[[str, bytes], None],
    on_bad_topic: Callable[[], None],
) -> None:
    """Deliver each received PUBLISH as ``on_message(topic, payload)`` on the event loop thread
    (paho parses in aiomqtt's socket reader), instead of through ``client.messages``.

    ``on_message`` must not raise: paho re-raises a callback's exception, and aiomqtt would take
    it for a broken connection. A topic that is not UTF-8 is counted by ``on_bad_topic``.
    """
    inner: paho.Client = client._client  # private: see the module docstring
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
