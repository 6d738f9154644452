"""The dashboard's page, assets and live stream against a real broker and database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from api.dashboard import StreamConfig, StreamHub
from core.settings import Settings, parse_mqtt_url
from core.wire import Reading, encode_reading
from tests.integration.api_support import Keys
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration


def _publish(url: str, topic: str, payload: bytes) -> None:
    target = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()


def _reading(sensor: str, value: float) -> bytes:
    return encode_reading(Reading(sensor_id=sensor, time=datetime.now(UTC), value=value))


async def _until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


async def _next_batch(hub: StreamHub, timeout_s: float = 10.0) -> dict[str, Any]:
    sub = hub.subscribe()
    try:
        raw = await asyncio.wait_for(sub.queue.get(), timeout=timeout_s)
    finally:
        hub.unsubscribe(sub)
    return dict(json.loads(raw.decode().split("data: ", 1)[1]))


def test_hub_follows_the_broker_and_survives_its_restart(
    broker_factory: Callable[..., MosquittoServer],
) -> None:
    broker = broker_factory()
    settings = Settings(database_url="postgresql://unused@127.0.0.1/x", mqtt_url=broker.url)
    hub_config = StreamConfig(flush_interval_s=0.05, reconnect_min_s=0.1, reconnect_max_s=0.5)

    async def scenario() -> None:
        hub = StreamHub(settings, hub_config)
        await hub.start()
        try:
            await _until(lambda: hub.connected)
            batch = asyncio.create_task(_next_batch(hub))
            await asyncio.sleep(0.05)
            await asyncio.to_thread(
                _publish, broker.url, "sensors/dash-1/readings", _reading("dash-1", 4.5)
            )
            got = await batch
            assert got["latest"]["dash-1"]["value"] == 4.5
            assert got["points"]["dash-1"][0][1] == 4.5

            await asyncio.to_thread(broker.restart)
            await _until(lambda: hub.connected and hub.stats.connects >= 2)
            batch = asyncio.create_task(_next_batch(hub))
            await asyncio.sleep(0.05)
            await asyncio.to_thread(
                _publish, broker.url, "sensors/dash-1/readings", _reading("dash-1", 5.5)
            )
            assert (await batch)["latest"]["dash-1"]["value"] == 5.5
        finally:
            await hub.stop()

    asyncio.run(scenario())


def test_page_and_assets_are_served_without_a_key_but_not_outside_static(
    api_client: TestClient,
) -> None:
    client = api_client
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'src="static/app.js"' in page.text
    for asset, ctype in (
        ("app.js", "text/javascript"),
        ("style.css", "text/css"),
        ("vendor/uplot/uPlot.iife.min.js", "text/javascript"),
    ):
        resp = client.get(f"/static/{asset}")
        assert resp.status_code == 200, asset
        assert resp.headers["content-type"].startswith(ctype)
    for bad in ("../dashboard.py", "vendor/uplot/LICENSE", "%2e%2e/app.py", "nope.js"):
        resp = client.get(f"/static/{bad}")
        assert resp.status_code == 404, bad
        assert resp.json()["error"]["code"] == "not_found"


def test_stream_needs_reports_read(api_client: TestClient, api_keys: Keys) -> None:
    assert api_client.get("/api/v1/stream").status_code == 401
    resp = api_client.get("/api/v1/stream", headers=api_keys.headers("ingest"))
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "insufficient_scope"


def test_stream_sends_hello_then_live_batches(
    api_client: TestClient, api_keys: Keys, broker: MosquittoServer
) -> None:
    client = api_client
    headers = api_keys.headers("reports")
    with client.stream("GET", "/api/v1/stream", headers=headers) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        assert next(lines) == "event: hello"
        hello = json.loads(next(lines).removeprefix("data: "))
        assert "server_time" in hello and "latest" in hello
        hub = client.app.state.dashboard_hub  # type: ignore[attr-defined]
        client.portal.call(_until, lambda: hub.connected)  # type: ignore[union-attr]
        _publish(broker.url, "sensors/dash-http/readings", _reading("dash-http", 42.0))
        # Bounded: keepalives and other batches may come first, but not hundreds of them.
        for _, line in zip(range(500), lines, strict=False):
            if line.startswith("data: ") and "dash-http" in line:
                batch = json.loads(line.removeprefix("data: "))
                assert batch["latest"]["dash-http"]["value"] == 42.0
                assert batch["dropped"] == 0
                break
        else:
            pytest.fail("the published reading never reached the stream")
    # The client went away: its queue is gone too (no leak per closed browser tab).
    client.portal.call(_until, lambda: hub.clients == 0)  # type: ignore[union-attr]
    stats = client.get("/api/v1/stream/stats", headers=headers).json()
    assert stats["started"] is True and stats["messages"] >= 1
    metrics = client.get("/metrics").text
    assert "sensorpipe_api_stream_batches_total" in metrics
