"""core.runtime: the services' MQTT clients leave no garbage for the cyclic collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.runtime import no_garbage_per_message


def _client(received: list[str]) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="runtime-test")
    c.on_message = lambda _c, _u, msg: received.append(msg.topic)
    return c


def _deliver(c: paho.Client, topics: list[str]) -> None:
    for topic in topics:  # what paho does with each PUBLISH it has parsed
        msg = paho.MQTTMessage(topic=topic.encode())
        msg.payload = b'{"value": 1}'
        c._handle_on_message(msg)


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _cyclic_garbage_of(c: paho.Client, n: int) -> int:
    gc.collect()
    _deliver(c, [f"sensors/s-{i}/readings" for i in range(n)])
    return gc.collect()  # objects only the cyclic collector could free


@pytest.mark.usefixtures("collector_off")
def test_receiving_leaves_no_reference_cycles() -> None:
    received: list[str] = []
    fixed = _client(received)
    no_garbage_per_message(fixed)
    assert _cyclic_garbage_of(fixed, 200) == 0
    assert len(received) == 200 and received[-1] == "sensors/s-199/readings"


@pytest.mark.usefixtures("collector_off")
def test_paho_alone_still_leaves_a_cycle_per_message() -> None:
    # Why the fix exists (a canary on the installed paho): when a release stops doing this,
    # no_garbage_per_message and this test can go.
    assert _cyclic_garbage_of(_client([]), 200) >= 200


def test_per_topic_callbacks_still_work_when_registered() -> None:
    received: list[str] = []
    filtered: list[str] = []
    c = _client(received)
    no_garbage_per_message(c)
    c.message_callback_add("alerts/+", lambda _c, _u, msg: filtered.append(msg.topic))
    _deliver(c, ["alerts/a", "sensors/a/readings", "$SYS/x"])
    assert filtered == ["alerts/a"]
    assert received == ["sensors/a/readings", "$SYS/x"]
    c.message_callback_remove("alerts/+")
    _deliver(c, ["alerts/b"])
    assert filtered == ["alerts/a"] and received[-1] == "alerts/b"
