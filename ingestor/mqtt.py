"""The paho-mqtt adapter: a persistent MQTT v5 session that hands messages to a bounded queue
and acknowledges them only when told to (after the database COMMIT).

Why paho and threads rather than aiomqtt: aiomqtt v2 has no manual acknowledgement, and its
incoming queue drops on overflow. Here the memory bound is the broker's: MQTT v5 *Receive
Maximum* caps how many unacknowledged messages it may have in flight to us, and since nothing is
acknowledged before COMMIT, that cap is how much the process can ever hold.

Acknowledgements belong to a connection. After a reconnect the broker redelivers every message
we had not acknowledged, with the *same* packet ids, so acknowledging an old id on the new
connection could acknowledge a different, uncommitted message. Each connection therefore gets a
generation number; an acknowledgement for an older generation is dropped (its message comes back
and is stored again as a no-op duplicate).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.runtime import no_garbage_per_message
from core.topics import READINGS_FILTER, SENML_FILTER, shared, status_topic
from ingestor.batching import InboundMessage
from ingestor.metrics import IngestorMetrics
from ingestor.settings import COMPONENT, IngestorSettings

log = logging.getLogger(__name__)


def subscriptions(group: str) -> list[str]:
    """The topic filters the ingestor subscribes to (shared when ``group`` is set)."""
    filters = [READINGS_FILTER, SENML_FILTER]
    return [shared(group, f) for f in filters] if group else filters


def set_nodelay(sock: Any) -> None:
    """Disable Nagle: small PUBACKs must not wait ~40 ms for more data to coalesce."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # a unix or websocket transport has no such option
        log.debug("TCP_NODELAY not applicable to this socket")


class MqttIntake:
    """One paho client with its network thread; feeds ``sink`` and sends acknowledgements."""

    def __init__(
        self,
        settings: IngestorSettings,
        sink: queue.Queue[InboundMessage],
        metrics: IngestorMetrics,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._metrics = metrics
        self._accepting = True
        self._connected = False
        self._subscribed = False  # SUBACK received on the current connection
        self._generation = 0
        self.delivered = 0  # messages handed to the sink (written by the network thread only)
        self._ack_lock = threading.Lock()
        self._status = status_topic(COMPONENT)
        self.client = self._build_client()

    def _build_client(self) -> paho.Client:
        s = self._settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        target = s.mqtt
        if target.username:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set(
                ca_certs=s.mqtt_tls_ca_file,
                certfile=s.mqtt_tls_cert_file,
                keyfile=s.mqtt_tls_key_file,
            )
            client.tls_insecure_set(s.mqtt_tls_insecure)
        client.will_set(self._status, "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, s.ingest_mqtt_reconnect_max_s)
        client.on_socket_open = lambda _c, _u, sock: set_nodelay(sock)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        no_garbage_per_message(client)
        client.on_subscribe = self._on_subscribe
        return client

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Connect in the background; paho's network thread reconnects with backoff."""
        s = self._settings
        # paho's Properties is untyped.
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.ingest_session_expiry_s
        props.ReceiveMaximum = s.ingest_receive_maximum
        target = s.mqtt
        self.client.connect_async(
            target.host,
            target.port,
            keepalive=s.mqtt_keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()

    def close_intake(self) -> None:
        """Stop taking messages; later ones stay unacknowledged and come back next session."""
        self._accepting = False

    def stop(self, timeout_s: float = 2.0) -> None:
        """Publish ``offline``, disconnect cleanly (no last will), stop the network thread."""
        self._accepting = False
        if self._connected:
            info = self.client.publish(self._status, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=timeout_s)
            except (RuntimeError, ValueError):  # connection dropped meanwhile: the will covers it
                log.info("could not publish offline status; the last will reports it")
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected

    def readiness(self) -> tuple[bool, str]:
        if not self._connected:
            return False, "not connected to the broker"
        if not self._subscribed:
            return False, "connected, subscription not yet confirmed"
        return True, "ok"

    # ---------------------------------------------------------------- acknowledgements

    def ack(self, msg: InboundMessage) -> bool:
        """Acknowledge ``msg`` if the connection that delivered it is still the current one."""
        if msg.qos == 0:
            return True
        with self._ack_lock:
            if msg.generation != self._generation or not self._connected:
                return False
            self.client.ack(msg.mid, msg.qos)
            return True

    # ---------------------------------------------------------------- paho callbacks

    def _on_connect(
        self, client: paho.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        with self._ack_lock:
            self._generation += 1
            self._connected = True
        self._metrics.mqtt_connected.set(1)
        self._metrics.mqtt_connects.inc()
        log.info(
            "connected to the broker as %s (session present: %s)",
            self._settings.client_id,
            bool(flags.session_present),
        )
        # Re-subscribing is a no-op on a present session and restores an expired one.
        client.subscribe(
            [(f, SubscribeOptions(qos=1)) for f in subscriptions(self._settings.ingest_share_group)]
        )
        client.publish(self._status, "online", qos=1, retain=True)

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        with self._ack_lock:
            self._generation += 1
            self._connected = False
            self._subscribed = False
        self._metrics.mqtt_connected.set(0)
        if self._accepting:
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, reasons: list[Any], _props: Any
    ) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            # e.g. an ACL that forbids the filter: stay not-ready, loudly.
            log.error("the broker refused our subscriptions: %s", ", ".join(failed))
            return
        self._subscribed = True

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        if not self._accepting:
            return  # not acknowledged: redelivered to this session after the restart
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")
        payload = message.payload
        item = InboundMessage(
            topic,
            payload if isinstance(payload, bytes) else bytes(payload),
            message.mid,
            self._generation,
            time.time(),
            message.qos,
        )
        self.delivered += 1
        try:
            self._sink.put_nowait(item)
        except queue.Full:
            # Only reachable when the queue is smaller than what the broker may send; blocking
            # here stops reading the socket, which is backpressure, not loss.
            self._metrics.queue_full.inc()
            while self._accepting:
                try:
                    self._sink.put(item, timeout=0.5)
                    return
                except queue.Full:
                    continue
