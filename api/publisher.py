"""Publishes HTTP-ingested readings to ``sensors/<id>/readings`` exactly as a device would.

One aiomqtt client, kept connected by a reconnect loop with backoff (the aiomqtt pattern: a
reusable client whose ``messages`` iterator raises when the connection drops). ``publish`` waits
for the broker's PUBACK (QoS 1), so a 202 means the broker holds the readings. Nagle is off on
the socket: a small publish would otherwise wait tens of milliseconds for a delayed ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Sequence

import aiomqtt

from core.errors import BrokerError
from core.settings import Settings

log = logging.getLogger(__name__)

_BACKOFF_START_S = 0.2
_BACKOFF_MAX_S = 10.0


class Publisher:
    def __init__(self, settings: Settings, *, client_id: str, timeout_s: float) -> None:
        self.settings = settings
        self.client_id = client_id
        self.timeout_s = timeout_s
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._last_error = "not connected yet"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    @property
    def status(self) -> tuple[bool, str]:
        return (True, "connected") if self.connected else (False, self._last_error)

    def _make_client(self) -> aiomqtt.Client:
        target = self.settings.mqtt
        tls_context: ssl.SSLContext | None = None
        if target.tls:
            tls_context = ssl.create_default_context(cafile=self.settings.mqtt_tls_ca_file)
            if self.settings.mqtt_tls_cert_file:
                tls_context.load_cert_chain(
                    self.settings.mqtt_tls_cert_file, self.settings.mqtt_tls_key_file
                )
        return aiomqtt.Client(
            target.host,
            target.port,
            username=target.username,
            password=target.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            keepalive=self.settings.mqtt_keepalive_s,
            timeout=self.timeout_s,
            tls_context=tls_context,
            tls_insecure=self.settings.mqtt_tls_insecure or None,
            # Bounded in-flight window: beyond it paho queues, and our callers wait on PUBACKs.
            max_inflight_messages=200,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a connection until ``stop`` is set; reconnect with exponential backoff."""
        backoff = _BACKOFF_START_S
        client = self._make_client()
        while not stop.is_set():
            try:
                async with client:
                    self._client = client
                    self._connected.set()
                    backoff = _BACKOFF_START_S
                    log.info("publisher connected to the broker")
                    await _until_disconnected(client, stop)
            except aiomqtt.MqttError as exc:
                self._last_error = f"broker unreachable: {exc}"
                log.warning("publisher disconnected: %s; retrying in %.1fs", exc, backoff)
            finally:
                self._connected.clear()
                self._client = None
            if stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish every (topic, payload) with QoS 1 and wait for all PUBACKs."""
        client = self._client
        if client is None or not self.connected:
            raise BrokerError(f"the broker is unavailable: {self._last_error}")
        try:
            async with asyncio.timeout(self.timeout_s):
                await asyncio.gather(*(client.publish(t, p, qos=1) for t, p in messages))
        except (aiomqtt.MqttError, TimeoutError) as exc:
            raise BrokerError(f"publish failed: {exc}") from exc


async def _until_disconnected(client: aiomqtt.Client, stop: asyncio.Event) -> None:
    """Return when ``stop`` is set; raise MqttError when the connection drops."""

    async def watch() -> None:
        # The messages iterator ends with MqttError when the connection is lost.
        async for _ in client.messages:
            pass

    watcher = asyncio.create_task(watch())
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({watcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if watcher in done:
            watcher.result()  # re-raise the disconnect
    finally:
        for task in (watcher, stopper):
            task.cancel()
        await asyncio.gather(watcher, stopper, return_exceptions=True)
