"""Acknowledgements belong to the connection that delivered the message: after a reconnect the
broker reuses packet ids for redeliveries, so an old id must never be acknowledged again."""

from __future__ import annotations

import queue
from types import SimpleNamespace

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import CollectorRegistry

from ingestor.batching import InboundMessage
from ingestor.metrics import IngestorMetrics
from ingestor.mqtt import MqttIntake
from ingestor.settings import IngestorSettings


def intake() -> tuple[MqttIntake, queue.Queue[InboundMessage]]:
    s = IngestorSettings(
        database_url="postgresql://x/y", mqtt_url="mqtt://127.0.0.1:1", ingest_client_id="unit"
    )
    q: queue.Queue[InboundMessage] = queue.Queue(10)
    return MqttIntake(s, q, IngestorMetrics(CollectorRegistry())), q


def deliver(i: MqttIntake, mid: int) -> None:
    message = SimpleNamespace(topic="sensors/s/readings", payload=b"{}", mid=mid, qos=1)
    i._on_message(i.client, None, message)  # type: ignore[arg-type]


def test_acks_only_on_the_delivering_connection() -> None:
    i, q = intake()
    ok = ReasonCode(PacketTypes.CONNACK, "Success")
    i._on_connect(i.client, None, SimpleNamespace(session_present=False), ok, None)
    deliver(i, 7)
    first = q.get_nowait()
    assert i.ack(first)
    i._on_disconnect(i.client, None, None, ok, None)
    assert not i.ack(first)  # disconnected: nothing to acknowledge on
    i._on_connect(i.client, None, SimpleNamespace(session_present=True), ok, None)
    assert not i.ack(first)  # new connection: id 7 may now be a different message
    deliver(i, 7)
    assert i.ack(q.get_nowait())


def test_ready_only_once_the_subscription_is_confirmed() -> None:
    i, _ = intake()
    ok = ReasonCode(PacketTypes.CONNACK, "Success")
    i._on_connect(i.client, None, SimpleNamespace(session_present=False), ok, None)
    assert not i.readiness()[0]
    refused = ReasonCode(PacketTypes.SUBACK, "Not authorized")
    i._on_subscribe(
        i.client, None, 1, [ReasonCode(PacketTypes.SUBACK, "Granted QoS 1"), refused], None
    )
    assert not i.readiness()[0]
    i._on_subscribe(i.client, None, 2, [ReasonCode(PacketTypes.SUBACK, "Granted QoS 1")], None)
    assert i.readiness() == (True, "ok")
    i._on_disconnect(i.client, None, None, ok, None)
    assert not i.readiness()[0]


def test_refused_connection_does_not_count_as_connected() -> None:
    i, _ = intake()
    refused = ReasonCode(PacketTypes.CONNACK, "Not authorized")
    i._on_connect(i.client, None, SimpleNamespace(session_present=False), refused, None)
    assert i.readiness() == (False, "not connected to the broker")


def test_after_intake_closes_messages_are_left_for_redelivery() -> None:
    i, q = intake()
    i.close_intake()
    deliver(i, 1)
    assert q.empty()
