"""The operator dashboard: the page at ``/`` and its live stream at ``/api/v1/stream``.

The page (``api/static``) is plain HTML/CSS/JS that calls the same JSON API as any client, with
the API key the operator enters once. Live updates come from :class:`StreamHub`: one MQTT
subscription per API process (``sensors/+/readings``, ``sensors/+/senml``, ``alerts/+``) whose
messages are coalesced into one batch per ``flush_interval_s`` and fanned out to every connected
browser through a bounded per-client queue. A slow client loses its *oldest* batches (counted),
never slows the broker loop or the other clients; every batch carries each sensor's latest value,
so a client that lost batches still shows the current state.

The stream is server-sent events over a plain ``GET``. Browsers' ``EventSource`` cannot send an
``X-API-Key`` header, so the page reads the body with ``fetch()`` and parses the events itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import signal
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import aiomqtt
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, StreamingResponse
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette

from api.deps import ReportsKey
from api.errors import ApiError
from core import topics
from core.errors import WireError
from core.settings import Settings
from core.wire import AnomalyEvent, Limits, Reading, decode, decode_event

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STREAM_PATH = "/api/v1/stream"
# Put in a client's queue to end its stream (server shutdown).
CLOSE = b""


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Limits of the live stream; every one of them is counted when it is hit."""

    # 250 ms batches: 100 sensors at 10 readings/s become 4 messages/s per browser, each with at
    # most ~3 points per sensor, which a laptop redraws without falling behind.
    flush_interval_s: float = 0.25
    # Batches a client may have queued (about 16 s at 250 ms) before its oldest are dropped.
    client_queue_batches: int = 64
    max_clients: int = 64
    # Points per sensor per batch; a burst (an offline backlog) is thinned to this many.
    max_points_per_sensor: int = 25
    # Points buffered per sensor between two flushes before the oldest are dropped.
    max_buffer_per_sensor: int = 1000
    max_alerts_per_batch: int = 500
    max_sensors: int = 10_000
    keepalive_s: float = 15.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0


@dataclass
class StreamStats:
    """Counters of one hub (also served at ``/api/v1/stream/stats``)."""

    messages: int = 0
    readings: int = 0
    alerts: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    dropped_batches: int = 0
    dropped_points: int = 0
    decimated_points: int = 0
    dropped_alerts: int = 0
    refused_clients: int = 0
    connects: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in vars(self).items()}


class Subscriber:
    """One connected browser: a bounded queue of encoded batches, oldest dropped on overflow."""

    _ids = itertools.count(1)

    def __init__(self, maxsize: int) -> None:
        self.id = next(self._ids)
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def make_room(self) -> bool:
        """Drop the oldest queued batch if the queue is full; True when one was dropped."""
        if not self.queue.full():
            return False
        with contextlib.suppress(asyncio.QueueEmpty):
            self.queue.get_nowait()
        self.dropped += 1
        return True


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sse(event: str, data: str) -> bytes:
    """One server-sent event (``data`` is single-line JSON, so one ``data:`` line suffices)."""
    return f"event: {event}\ndata: {data}\n\n".encode()


def _thin(points: list[tuple[float, float]], keep: int) -> list[tuple[float, float]]:
    """Evenly spaced ``keep`` points of ``points``, always with the last (the current value)."""
    if len(points) <= keep:
        return points
    if keep <= 1:
        return points[-1:]
    step = (len(points) - 1) / (keep - 1)
    return [points[round(i * step)] for i in range(keep)]


class StreamHub:
    """One MQTT subscription per API process, fanned out to the connected dashboards.

    ``offer()`` (called for every MQTT message) only decodes and buffers; ``flush()`` (every
    ``flush_interval_s``) encodes one batch and hands it to every subscriber without awaiting,
    so neither a burst on the broker nor a stalled browser can block the other side.
    """

    def __init__(self, settings: Settings, config: StreamConfig | None = None) -> None:
        self.settings = settings
        self.config = config or StreamConfig()
        self.stats = StreamStats()
        self.connected = False
        self._limits: Limits = settings.limits
        self._subscribers: dict[int, Subscriber] = {}
        self._pending: dict[str, deque[tuple[float, float]]] = {}
        self._alerts: deque[dict[str, Any]] = deque(maxlen=self.config.max_alerts_per_batch)
        # The latest reading of every sensor seen, sent to a client when it connects.
        self._latest: dict[str, dict[str, Any]] = {}
        self._changed: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._closing = False
        self._chained: dict[int, Any] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._mqtt_loop(), name="dashboard-mqtt"),
            asyncio.create_task(self._flush_loop(), name="dashboard-flush"),
        ]
        self._chain_exit_signals()

    def _chain_exit_signals(self) -> None:
        """End the streams when the server is told to stop.

        A server-sent event stream never finishes by itself, and uvicorn's graceful shutdown
        waits for open responses before it runs the lifespan shutdown, so every open browser
        tab would hold SIGTERM up. uvicorn gives an application no shutdown signal of its own;
        we chain onto its SIGINT/SIGTERM handlers (restored in ``stop``) and close the streams,
        so the responses complete and the shutdown proceeds at once. Only the main thread may
        set signal handlers; elsewhere (a test client's thread) this is skipped.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            self._chained[sig] = previous

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.close_streams)
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, handler)

    def close_streams(self) -> None:
        """Finish every open stream (the clients reconnect elsewhere) and refuse new ones."""
        self._closing = True
        for sub in list(self._subscribers.values()):
            sub.make_room()
            sub.queue.put_nowait(CLOSE)

    async def stop(self) -> None:
        self.close_streams()
        if threading.current_thread() is threading.main_thread():
            for sig, previous in self._chained.items():
                signal.signal(sig, previous)
        self._chained.clear()
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        log.info("dashboard stream stopped", extra={"stream": self.stats.as_dict()})

    # ------------------------------------------------------------------ clients

    def subscribe(self) -> Subscriber:
        if self._closing:
            raise ApiError(
                503,
                "shutting_down",
                "the server is shutting down; retry shortly",
                headers={"Retry-After": "2"},
            )
        if len(self._subscribers) >= self.config.max_clients:
            self.stats.refused_clients += 1
            raise ApiError(
                503,
                "too_many_streams",
                f"{self.config.max_clients} live streams are open; retry later",
                headers={"Retry-After": "5"},
            )
        sub = Subscriber(self.config.client_queue_batches)
        self._subscribers[sub.id] = sub
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.pop(sub.id, None)

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    def snapshot(self) -> dict[str, Any]:
        """What a newly connected client needs first: every sensor's latest reading."""
        return {
            "server_time": _iso(datetime.now(UTC)),
            "flush_interval_s": self.config.flush_interval_s,
            "broker_connected": self.connected,
            "latest": self._latest,
        }

    # ------------------------------------------------------------------ intake

    def offer(self, topic: str, payload: bytes) -> None:
        """Decode one MQTT message into the pending batch. Never raises for a bad message."""
        self.stats.messages += 1
        try:
            kind, sensor_id = topics.parse_topic(topic)
            if kind is topics.TopicKind.ALERTS:
                self._add_alert(decode_event(payload, topic_sensor_id=sensor_id))
            else:
                decoded = decode(kind, payload, topic_sensor_id=sensor_id, limits=self._limits)
                for item in decoded.errors:
                    self._reject(item.reason)
                self._add_readings(decoded.readings)
        except WireError as exc:
            # The ingestor stores and counts rejects; the dashboard only skips them.
            self._reject(exc.reason)
        except Exception:  # the one guard per message: a bug here must not kill the loop
            log.exception("dashboard stream could not handle a message on %s", topic)
            self._reject("internal_error")

    def _reject(self, reason: str) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1

    def _add_readings(self, readings: Iterable[Reading]) -> None:
        cap = self.config.max_buffer_per_sensor
        for r in readings:
            buf = self._pending.get(r.sensor_id)
            if buf is None:
                if r.sensor_id not in self._latest and len(self._latest) >= self.config.max_sensors:
                    self.stats.dropped_points += 1
                    continue
                buf = self._pending[r.sensor_id] = deque(maxlen=cap)
            if len(buf) == cap:
                self.stats.dropped_points += 1
            buf.append((r.time.timestamp(), r.value))
            self.stats.readings += 1
            prev = self._latest.get(r.sensor_id)
            if prev is None or r.time.timestamp() >= prev["t"]:
                self._latest[r.sensor_id] = {
                    "t": r.time.timestamp(),
                    "value": r.value,
                    "sensor_type": r.sensor_type or (prev or {}).get("sensor_type"),
                    "unit": r.unit or (prev or {}).get("unit"),
                }
                self._changed.add(r.sensor_id)

    def _add_alert(self, event: AnomalyEvent) -> None:
        if len(self._alerts) == self._alerts.maxlen:
            self.stats.dropped_alerts += 1
        self._alerts.append(event.model_dump(mode="json"))
        self.stats.alerts += 1

    # ------------------------------------------------------------------ fan-out

    def flush(self) -> int:
        """Encode the pending batch once and queue it for every client; returns clients served."""
        if not self._pending and not self._alerts and not self._changed:
            return 0
        keep = self.config.max_points_per_sensor
        points: dict[str, list[tuple[float, float]]] = {}
        for sid, buf in self._pending.items():
            pts = sorted(buf)
            thinned = _thin(pts, keep)
            self.stats.decimated_points += len(pts) - len(thinned)
            points[sid] = thinned
        latest = {sid: self._latest[sid] for sid in self._changed if sid in self._latest}
        alerts = list(self._alerts)
        self._pending.clear()
        self._alerts.clear()
        self._changed.clear()
        self.stats.batches += 1

        # Encoded once per flush; only the per-client drop counter is spliced in.
        body = json.dumps(
            {"latest": latest, "alerts": alerts, "points": points}, separators=(",", ":")
        )[1:]
        served = 0
        for sub in list(self._subscribers.values()):
            if sub.make_room():
                self.stats.dropped_batches += 1
            # After make_room, so the batch tells the client about the drop it follows.
            sub.queue.put_nowait(sse("batch", f'{{"dropped":{sub.dropped},{body}'))
            served += 1
        return served

    async def _flush_loop(self) -> None:
        interval = self.config.flush_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                self.flush()
            except Exception:  # a bad batch must not end live updates for everyone
                log.exception("dashboard stream flush failed")

    # ------------------------------------------------------------------ broker

    def _client(self) -> aiomqtt.Client:
        target = self.settings.mqtt
        tls: aiomqtt.TLSParameters | None = None
        if target.tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=self.settings.mqtt_tls_ca_file,
                certfile=self.settings.mqtt_tls_cert_file,
                keyfile=self.settings.mqtt_tls_key_file,
            )
        return aiomqtt.Client(
            target.host,
            target.port,
            username=target.username,
            password=target.password,
            # A view, not a consumer: a fresh session per connection, and QoS 0 for readings so
            # the broker never queues a backlog for a dashboard that was away.
            identifier=f"sensorpipe-dashboard-{socket.gethostname()}-{os.getpid()}-{id(self):x}",
            clean_session=True,
            keepalive=self.settings.mqtt_keepalive_s,
            tls_params=tls,
            tls_insecure=self.settings.mqtt_tls_insecure or None,
            # paho's own incoming queue is unbounded by default; ours drains it every message.
            max_queued_incoming_messages=50_000,
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )

    async def _mqtt_loop(self) -> None:
        backoff = self.config.reconnect_min_s
        while not self._stopping.is_set():
            try:
                async with self._client() as client:
                    await client.subscribe(
                        [
                            (topics.READINGS_FILTER, 0),
                            (topics.SENML_FILTER, 0),
                            (topics.ALERTS_FILTER, 1),
                        ]
                    )
                    self.connected = True
                    self.stats.connects += 1
                    backoff = self.config.reconnect_min_s
                    log.info("dashboard stream subscribed to the broker")
                    async for message in client.messages:
                        payload = message.payload
                        raw = payload if isinstance(payload, bytes) else str(payload).encode()
                        self.offer(message.topic.value, raw)
            except aiomqtt.MqttError as exc:
                log.warning(
                    "dashboard stream lost the broker (%s); retrying within %.1fs", exc, backoff
                )
            finally:
                self.connected = False
            # Full jitter keeps many API processes from reconnecting in lock-step.
            await asyncio.sleep(random.uniform(0, backoff))  # noqa: S311 - not cryptographic
            backoff = min(backoff * 2, self.config.reconnect_max_s)


# ---------------------------------------------------------------------------- HTTP


class _StreamCollector(Collector):
    """The hub's counters on the API's ``/metrics``, read at scrape time."""

    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        st = self.hub.stats
        yield GaugeMetricFamily(
            "sensorpipe_api_stream_clients",
            "Connected live dashboard streams",
            value=self.hub.clients,
        )
        yield GaugeMetricFamily(
            "sensorpipe_api_stream_broker_connected",
            "1 when the dashboard stream is subscribed to the broker",
            value=int(self.hub.connected),
        )
        for name, value, doc in (
            ("messages", st.messages, "MQTT messages received by the dashboard stream"),
            ("batches", st.batches, "Batches fanned out to the dashboard clients"),
            (
                "dropped_batches",
                st.dropped_batches,
                "Oldest batches dropped for a slow dashboard client",
            ),
            ("dropped_points", st.dropped_points, "Readings dropped by a full per-sensor buffer"),
            ("decimated_points", st.decimated_points, "Readings thinned out of a burst"),
            ("dropped_alerts", st.dropped_alerts, "Alerts dropped by a full batch"),
            ("refused_clients", st.refused_clients, "Stream connections refused at the limit"),
        ):
            yield CounterMetricFamily(f"sensorpipe_api_stream_{name}", doc, value=value)
        rejected = CounterMetricFamily(
            "sensorpipe_api_stream_rejected",
            "Stream messages skipped as malformed, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(st.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected


def hub_of(app: Starlette) -> StreamHub:
    """The app's hub, created by the first stream client (an API that nobody watches live never
    subscribes to the broker's firehose)."""
    hub: StreamHub | None = getattr(app.state, "dashboard_hub", None)
    if hub is None:
        hub = StreamHub(app.state.settings)
        app.state.dashboard_hub = hub
        metrics = getattr(app.state, "metrics", None)
        if metrics is not None:
            app.state.dashboard_collector = _StreamCollector(hub)
            metrics.registry.register(app.state.dashboard_collector)
    return hub


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    try:
        yield None
    finally:
        hub: StreamHub | None = getattr(app.state, "dashboard_hub", None)
        if hub is not None:
            await hub.stop()
            # A later lifespan of the same app (tests do this) starts from a fresh hub.
            app.state.dashboard_hub = None
            collector = getattr(app.state, "dashboard_collector", None)
            if collector is not None:
                app.state.metrics.registry.unregister(collector)
                app.state.dashboard_collector = None


router = APIRouter(lifespan=_lifespan)

# The page and its assets hold no data, so they need no key; a strict CSP keeps them to this
# origin (no inline script, no network at run time besides the API itself).
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


@router.get("/", include_in_schema=False)
async def dashboard_page() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html", media_type=_MEDIA_TYPES[".html"], headers=_PAGE_HEADERS
    )


@router.get("/static/{path:path}", include_in_schema=False)
async def dashboard_asset(path: str) -> FileResponse:
    target = (STATIC_DIR / path).resolve()
    media_type = _MEDIA_TYPES.get(target.suffix)
    # Only files inside api/static with a known type: no traversal, no directory listing.
    if media_type is None or not target.is_relative_to(STATIC_DIR) or not target.is_file():
        raise ApiError(404, "not_found", f"no dashboard asset {path!r}")
    return FileResponse(target, media_type=media_type, headers=_PAGE_HEADERS)


async def _events(hub: StreamHub, sub: Subscriber) -> AsyncIterator[bytes]:
    try:
        yield sse("hello", json.dumps(hub.snapshot(), separators=(",", ":")))
        while True:
            try:
                item = await asyncio.wait_for(sub.queue.get(), timeout=hub.config.keepalive_s)
            except TimeoutError:
                # A comment line keeps proxies from closing an idle stream.
                item = b": keepalive\n\n"
            if not item:  # CLOSE: every real item is a non-empty event or comment
                return
            yield item
    finally:
        # Starlette cancels this generator when the client goes away.
        hub.unsubscribe(sub)


@router.get(
    STREAM_PATH,
    tags=["dashboard"],
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-sent events: `hello` (snapshot), then `batch`.",
        }
    },
)
async def stream(request: Request, key: ReportsKey) -> StreamingResponse:
    """Live readings and alerts as server-sent events, coalesced every 250 ms.

    The first event, ``hello``, carries the server time and every sensor's latest reading. Each
    ``batch`` then carries ``latest`` (sensors that changed), ``points`` (``[epoch_s, value]``
    per sensor, thinned to at most 25 per sensor), ``alerts`` (anomaly events as published on
    ``alerts/<sensor_id>``) and ``dropped`` (batches this client lost by reading too slowly).
    """
    hub = hub_of(request.app)
    await hub.start()
    sub = hub.subscribe()
    log.info("dashboard stream opened", extra={"key": key.name, "clients": hub.clients})
    return StreamingResponse(
        _events(hub, sub),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(f"{STREAM_PATH}/stats", tags=["dashboard"])
async def stream_stats(request: Request, key: ReportsKey) -> dict[str, Any]:
    """Counters of this API process's live stream (clients, batches, drops, rejects)."""
    hub: StreamHub | None = getattr(request.app.state, "dashboard_hub", None)
    if hub is None:
        return {"started": False, "clients": 0}
    return {
        "started": True,
        "clients": hub.clients,
        "broker_connected": hub.connected,
        **hub.stats.as_dict(),
    }
