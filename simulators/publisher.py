"""Acknowledged MQTT publishing of simulated readings (paho-mqtt 2.x, MQTT v5).

The count a ``Publisher`` reports is exact: a reading counts as *sent* only when the broker has
acknowledged its message (PUBACK with a success reason code at QoS 1; written to the socket at
QoS 0), and as *failed* when the broker refused it, paho could not queue it, or no
acknowledgement came before the run ended. In-flight messages are bounded (``max_inflight``):
``publish`` blocks until an acknowledgement frees a slot, so a slow broker slows the simulator
instead of growing paho's unbounded internal queue.

Payloads are built by ``encode_batch`` with the ``core.wire`` encoders only, one sensor per
message (the topic names the sensor and is authoritative): ``json`` sends one reading object, or
an array of them when batched; ``senml`` sends a SenML pack.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.errors import BrokerError
from core.settings import MqttTarget
from core.topics import readings_topic, senml_topic
from core.wire import Reading, encode_reading, encode_readings, encode_senml

log = logging.getLogger(__name__)

PayloadFormat = Literal["json", "senml"]


def encode_batch(readings: Sequence[Reading], fmt: PayloadFormat) -> tuple[str, bytes]:
    """Topic and payload for one sensor's readings (a single reading object when alone)."""
    if not readings:
        raise ValueError("nothing to encode")
    sid = readings[0].sensor_id
    if fmt == "senml":
        return senml_topic(sid), encode_senml(readings)
    payload = encode_reading(readings[0]) if len(readings) == 1 else encode_readings(readings)
    return readings_topic(sid), payload


@dataclass(frozen=True, slots=True)
class TlsOptions:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False


@dataclass(slots=True)
class PublishStats:
    """Counts in readings (``sent``/``failed``) and in MQTT messages."""

    sent: int = 0
    failed: int = 0
    messages_sent: int = 0
    messages_failed: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Acknowledged readings per second since the start."""
        return self.sent / max(self.elapsed_s, 1e-9)


class Publisher:
    """One MQTT connection publishing with bounded in-flight messages and exact accounting."""

    def __init__(
        self,
        target: MqttTarget,
        *,
        qos: int = 1,
        client_id: str | None = None,
        tls: TlsOptions | None = None,
        max_inflight: int = 100,
        ack_timeout_s: float = 30.0,
        keepalive_s: int = 30,
    ) -> None:
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        self.target = target
        self.qos = qos
        self.max_inflight = max_inflight
        self.ack_timeout_s = ack_timeout_s
        self.keepalive_s = keepalive_s
        self.stats = PublishStats()
        self._cond = threading.Condition()
        self._pending: dict[int, int] = {}  # mid -> readings carried, awaiting acknowledgement
        self._early: dict[int, bool] = {}  # acks that arrived before publish() returned the mid
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or "", protocol=mqtt.MQTTv5
        )
        self._client.max_inflight_messages_set(max_inflight)
        if target.username is not None:
            self._client.username_pw_set(target.username, target.password)
        if target.tls or (tls and (tls.ca_file or tls.cert_file)):
            t = tls or TlsOptions()
            self._client.tls_set(
                ca_certs=t.ca_file,
                certfile=t.cert_file,
                keyfile=t.key_file,
                cert_reqs=ssl.CERT_NONE if t.insecure else ssl.CERT_REQUIRED,
            )
            self._client.tls_insecure_set(t.insecure)
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish
        self._client.on_disconnect = self._on_disconnect

    # ------------------------------------------------------------------ lifecycle

    def connect(self, timeout_s: float = 10.0) -> None:
        try:
            self._client.connect(self.target.host, self.target.port, keepalive=self.keepalive_s)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(
                f"cannot connect to {self.target.host}:{self.target.port}: {exc}"
            ) from exc
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            # Small MQTT packets would otherwise wait for Nagle's algorithm (tens of ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client.loop_start()
        if not self._connected.wait(timeout_s) or self._connect_error:
            self._client.loop_stop()
            raise BrokerError(self._connect_error or f"no CONNACK within {timeout_s:g}s")
        self.stats = PublishStats()

    def close(self, timeout_s: float | None = None) -> PublishStats:
        """Wait for outstanding acknowledgements (up to ``timeout_s``), then disconnect.
        Messages still unacknowledged count as failed."""
        self.flush(self.ack_timeout_s if timeout_s is None else timeout_s)
        with self._cond:
            lost = len(self._pending)
            self.stats.messages_failed += lost
            self.stats.failed += sum(self._pending.values())
            self._pending.clear()
        if lost:
            log.warning("%d messages were not acknowledged before closing", lost)
        self._client.disconnect()
        self._client.loop_stop()
        return self.stats

    # ------------------------------------------------------------------ publishing

    def publish(self, topic: str, payload: bytes, readings: int = 1) -> None:
        """Publish one message, blocking while ``max_inflight`` messages await acknowledgement."""
        self._wait_until(lambda: len(self._pending) < self.max_inflight, self.ack_timeout_s)
        info = self._client.publish(topic, payload, qos=self.qos)
        with self._cond:
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN) or (
                self.qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS
            ):
                # QoS 1 while disconnected is queued by paho and sent on reconnection;
                # anything else was not accepted at all.
                self._count(readings, ok=False)
                return
            early = self._early.pop(info.mid, None)
            if early is None:
                self._pending[info.mid] = readings
            else:
                self._count(readings, ok=early)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every published message is acknowledged; False on timeout."""
        try:
            self._wait_until(lambda: not self._pending, timeout_s)
        except BrokerError:
            return False
        return True

    @property
    def in_flight(self) -> int:
        with self._cond:
            return len(self._pending)

    # ------------------------------------------------------------------ internals

    def _count(self, readings: int, *, ok: bool) -> None:
        if ok:
            self.stats.sent += readings
            self.stats.messages_sent += 1
        else:
            self.stats.failed += readings
            self.stats.messages_failed += 1

    def _wait_until(self, predicate: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BrokerError(
                        f"no acknowledgement from the broker within {timeout_s:g}s "
                        f"({len(self._pending)} messages in flight)"
                    )
                self._cond.wait(min(remaining, 1.0))

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self._connect_error = f"broker refused the connection: {reason_code}"
        else:
            log.info("connected to %s:%d", self.target.host, self.target.port)
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.warning("disconnected from the broker (%s); paho reconnects", reason_code)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        ok = not reason_code.is_failure
        with self._cond:
            readings = self._pending.pop(mid, None)
            if readings is None:
                self._early[mid] = ok
            else:
                self._count(readings, ok=ok)
                if not ok:
                    log.warning("broker refused message %d: %s", mid, reason_code)
            self._cond.notify_all()
