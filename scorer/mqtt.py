"""The scorer's MQTT client (aiomqtt v2 over paho-mqtt 2).

Why aiomqtt rather than bare paho here (the ingestor uses paho for its manual acks): the scorer
never needs to hold an acknowledgement back. Its state is rebuilt from the database on start, so
it runs a *clean* session and a reading it loses in a crash costs nothing that the warm start does
not restore. What it does need is an asyncio client that shares one event loop with the database
pool and awaits PUBACK for each alert it publishes, which is aiomqtt's shape.

aiomqtt's incoming queue discards messages when full and only logs it; ``counting_queue`` makes
that drop visible as a metric (and silences the per-message log line, which would flood the log
exactly when the process is overloaded).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

import aiomqtt

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
