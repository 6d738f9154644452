"""The streaming scorer service: MQTT readings in, alerts out, one process per shard.

Lifecycle (after arq's worker): load models (refuse to start without them) → warm start from the
database (recent readings per sensor, open incidents, the registry for deadman) → subscribe → run
three tasks in a TaskGroup → on SIGTERM stop intake, drain with a deadline, publish ``offline``,
exit 0.

Tasks and the queues between them, all bounded:

* **session**: the MQTT connection with a reconnect loop. Readings are tapped as they are read off
  the socket (``_on_message``, on the event loop; ``scorer.mqtt``): other shards' are dropped (a
  cached topic lookup), the rest go with their arrival time to the score queue. Every connect
  asks for a catch-up.
* **score**: first any due catch-up (``_catch_up``: what was stored while disconnected, read back
  and scored like live readings), then takes what is waiting (up to ``scorer_batch_size``,
  lingering at most ``scorer_batch_max_age_ms``), and in ONE call on the state thread decodes,
  scores the micro-batch across sensors and runs the alert state machine. The state thread is a
  single dedicated thread (warm start and catch-up run there too), its calls never overlap, and
  it is the only place the per-sensor state is touched, so it needs no lock. Deadman checks run
  there too, between batches.
* **sink**: every alert event is upserted into ``anomaly_events`` first and then published on
  ``alerts/<sensor_id>`` (QoS 1, not retained), strictly in order; failures are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any, TypeVar

import aiomqtt
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from core.db import async_pool
from core.errors import ModelError, StorageError, WireError
from core.metrics import MetricsServer, Readiness
from core.registry import record_shadow_stats
from core.scoring.alerts import AlertMachine
from core.topics import (
    READINGS_FILTER,
    SENML_FILTER,
    TopicKind,
    alerts_topic,
    parse_topic,
    status_topic,
)
from core.wire import AnomalyEvent, Reading, decode, encode_event
from scorer import mqtt as scorer_mqtt
from scorer.metrics import ScorerMetrics
from scorer.models import ModelSet, load_models
from scorer.settings import ScorerSettings
from scorer.storage import (
    CatchUp,
    WarmStart,
    in_shard,
    load_catch_up,
    load_warm_start,
    store_events,
)

log = logging.getLogger(__name__)

# (arrival wall-clock seconds, topic kind, sensor id from the topic, raw payload)
Inbound = tuple[float, TopicKind, str, bytes]
Outbound = tuple[AnomalyEvent, float | None]  # (event, arrival time of the reading behind it)
_DONE = None
_UNROUTED = (TopicKind.READINGS, "")  # a cache miss (no sensor id is empty)
_BACKOFF_MAX_S = 10.0
_T = TypeVar("_T")


@dataclass
class BatchResult:
    """What one thread call produced (counters are merged into metrics on the loop)."""

    scored: int = 0
    events: list[Outbound] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    stale: int = 0
    caught_up: int = 0


class ScorerWorker:
    """One scorer process for shard ``i/N``; ``run()`` returns the process exit code."""

    def __init__(self, settings: ScorerSettings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.shard = settings.shard
        self.registry = registry or CollectorRegistry()
        self.metrics = ScorerMetrics(self.registry)
        self.alerts = AlertMachine(settings.alert_config)
        self.scoring_config = settings.scoring_config
        self.models: ModelSet | None = None
        self._pending_models: ModelSet | None = None
        self._intervals_s: dict[str, float] = {}
        self._last_time: dict[str, datetime] = {}
        # (sensor, time) of the readings the last catch-up scored: their live copies are
        # duplicates, told apart from genuinely late readings in the skip metric.
        self._caught_up: set[tuple[str, datetime]] = set()
        self._catchup_due = asyncio.Event()
        self._topic_cache: dict[str, tuple[TopicKind, str] | None] = {}
        self._score_q: asyncio.Queue[Inbound] = asyncio.Queue(settings.scorer_queue_size)
        # Set while the score loop waits for work; resolved by whatever brings some.
        self._wakeup: asyncio.Future[None] | None = None
        # The one thread that touches per-sensor state (scoring, warm start, catch-up).
        self._state_thread = ThreadPoolExecutor(1, thread_name_prefix="scorer-state")
        self._sink_q: asyncio.Queue[Outbound | None] = asyncio.Queue(
            settings.scorer_alert_queue_size
        )
        self._stopping = asyncio.Event()
        self._intake_closed = asyncio.Event()
        self._sink_done = asyncio.Event()
        self._connected = asyncio.Event()
        self._deadline = float("inf")
        self._warm = False
        self._reloading = False
        self.metrics_port: int | None = None
        self.scored_total = 0
        self.component = scorer_mqtt.component_name(self.shard)
        self._client = scorer_mqtt.make_client(
            settings,
            client_id=settings.client_id,
            component=self.component,
            protocol=settings.scorer_mqtt_protocol,
            queue_size=settings.scorer_mqtt_queue_size,
            on_drop=self.metrics.skipped.labels("queue_full").inc,
        )
        # The receive shortcuts of scorer/mqtt.py: readings arrive through _on_message.
        scorer_mqtt.tap_messages(
            self._client, self._on_message, self.metrics.rejected.labels("unknown_topic").inc
        )
        self.metrics.queue_depth.labels("score").set_function(self._score_q.qsize)
        self.metrics.queue_depth.labels("mqtt").set_function(lambda: len(self._client.messages))
        self.metrics.queue_depth.labels("alerts").set_function(self._sink_q.qsize)
        self.metrics.sensors.set_function(
            lambda: len(self.models.scorer.sensors()) if self.models is not None else 0
        )

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        log.info(
            "scoring overrides (SCORING): %s",
            self.settings.scoring_summary,
            extra={"scoring_overrides": self.settings.scoring_overrides},
        )
        self.models = await asyncio.to_thread(self._load_models)
        self._show_models(self.models)
        pool = async_pool(self.settings.dsn, min_size=1, max_size=4, name="sensorpipe-scorer")
        try:
            await pool.open(wait=True, timeout=30)
        except PoolTimeout as exc:
            await pool.close()
            raise StorageError(f"cannot connect to the database: {exc}") from exc
        server = MetricsServer(
            self.registry,
            self._readiness(),
            self.settings.scorer_metrics_host,
            self.settings.scorer_metrics_port,
        ).start()
        self.metrics_port = server.port
        try:
            await self._warm_start(pool, self.models, restore=True)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._session())
                tg.create_task(self._score_loop(pool))
                tg.create_task(self._sink(pool))
        finally:
            server.stop()
            await pool.close()
            self._state_thread.shutdown(wait=True)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info(
            "scorer stopped: %d readings scored, %d incidents open",
            self.scored_total,
            len(self.alerts.open_incidents()),
        )
        return 0

    def stop(self) -> None:
        """Stop intake now; the remaining work gets ``scorer_drain_timeout_s`` to finish."""
        if not self._stopping.is_set():
            log.info("stopping: draining for at most %.1fs", self.settings.scorer_drain_timeout_s)
            self._deadline = time.monotonic() + self.settings.scorer_drain_timeout_s
            self._stopping.set()

    def request_reload(self) -> None:
        if not self._reloading and not self._stopping.is_set():
            self._reloading = True
            task = asyncio.get_running_loop().create_task(self._reload())
            task.add_done_callback(lambda _: setattr(self, "_reloading", False))

    def _readiness(self) -> Readiness:
        r = Readiness()
        r.add("models", lambda: (self.models is not None, "models not loaded"))
        r.add("warm_start", lambda: (self._warm, "warm start not finished"))
        r.add("mqtt", lambda: (self._connected.is_set(), "not connected to the broker"))
        return r

    def _show_models(self, models: ModelSet) -> None:
        self.metrics.model_loaded.clear()
        for m in models.loaded:
            self.metrics.model_loaded.labels(m.name, str(m.version)).set(1)
        self.metrics.shadow_loaded.clear()
        for name, version in (models.tally.versions if models.tally else {}).items():
            self.metrics.shadow_loaded.labels(name, str(version)).set(1)

    # ------------------------------------------------------------------ warm start / reload

    async def _warm_start(
        self, pool: AsyncConnectionPool, models: ModelSet, *, restore: bool
    ) -> None:
        t0 = time.monotonic()
        ws = await load_warm_start(
            pool,
            shard=self.shard,
            now=datetime.now(UTC),
            window_s=self.settings.scorer_warm_start_window_s,
            max_readings=self.settings.scorer_warm_start_max_readings,
        )
        await self._in_state_thread(self._apply_warm_start, models, ws, restore)
        self._warm = True
        self.metrics.warm_start_readings.set(ws.readings)
        log.info(
            "warm start: %d sensors, %d readings, %d open incidents in %.2fs",
            len(ws.histories),
            ws.readings,
            len(ws.open_alerts),
            time.monotonic() - t0,
        )

    def _apply_warm_start(self, models: ModelSet, ws: WarmStart, restore: bool) -> None:
        # All sensors at once: their histories share the engine's numpy rounds.
        models.scorer.warm_start_many(ws.histories)
        if models.shadow is not None:
            models.shadow.warm_start_many(ws.histories)
        if restore:
            for sid, history in ws.histories.items():
                if history:
                    self._last_time[sid] = history[-1][0]
        if restore:
            self._intervals_s = dict(ws.intervals_s)
            # The deadman clock of every known sensor starts now, not at its last stored reading:
            # a sensor that reported while this process was down must get a full interval to
            # show up on the live stream before it is declared dead.
            started = datetime.now(UTC)
            for sid in self._deadman_watch(ws, started):
                self.alerts.mark_seen(sid, started)
            for alert in ws.open_alerts:
                self.alerts.restore(alert)
            self.metrics.open_alerts.set(len(self.alerts.open_incidents()))

    def _deadman_watch(self, ws: WarmStart, now: datetime) -> set[str]:
        """Sensors whose silence the deadman watches from the start: those seen in the warm window
        and every registered sensor of the shard last active within
        ``scorer_deadman_max_silence_s`` (older silence means decommissioned, not dead)."""
        horizon = now - timedelta(seconds=self.settings.scorer_deadman_max_silence_s)
        watch = set(ws.last_received)
        watch.update(sid for sid, t in ws.last_active.items() if t >= horizon)
        return watch

    async def _reload(self) -> None:
        """SIGHUP: load the active models and warm a fresh scorer; swap it in between batches."""
        log.info("reloading models from %s", self.settings.models_dir)
        try:
            models = await asyncio.to_thread(self._load_models)
            pool = async_pool(self.settings.dsn, min_size=1, max_size=1, name="scorer-reload")
            async with pool:
                await self._warm_start(pool, models, restore=False)
        except Exception:  # keep scoring with the old models, whatever went wrong
            log.exception("model reload failed; keeping %s", self._version())
            self.metrics.model_reloads.labels("failed").inc()
            return
        self._pending_models = models
        self.metrics.model_reloads.labels("ok").inc()

    def _load_models(self) -> ModelSet:
        return load_models(
            self.settings.models_dir, self.scoring_config, alert_config=self.settings.alert_config
        )

    async def _record_shadow(self, models: ModelSet) -> None:
        """Write the shadow figures for ``sensorpipe models promote`` (a small locked file)."""
        if models.tally is None:
            return
        stats = models.tally.stats()
        for _, st in stats[:1]:
            if st.agreement is not None:
                self.metrics.shadow_agreement.set(st.agreement)
        try:
            for name, st in stats:
                await asyncio.to_thread(record_shadow_stats, self.settings.models_dir, name, st)
        except ModelError as exc:  # the shadow was changed or cleared: the next reload follows
            log.warning("shadow figures not recorded: %s", exc)

    def _version(self) -> str:
        return self.models.version if self.models is not None else "unknown"

    # ------------------------------------------------------------------ MQTT session

    async def _session(self) -> None:
        backoff_s = 0.5
        while not self._stopping.is_set():
            try:
                async with self._client as client:
                    backoff_s = 0.5
                    await self._serve(client)
                    return
            except aiomqtt.MqttError as exc:
                self._connected.clear()
                log.warning("MQTT session lost (%s); reconnecting in %.1fs", exc, backoff_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff_s)
                backoff_s = min(backoff_s * 2, _BACKOFF_MAX_S)
        self._notify(self._intake_closed)

    async def _serve(self, client: aiomqtt.Client) -> None:
        topic = status_topic(self.component)
        qos = self.settings.scorer_subscribe_qos
        await client.subscribe([(READINGS_FILTER, qos), (SENML_FILTER, qos)])
        # "online" only once subscribed: whoever waits for it may publish right away.
        await client.publish(topic, scorer_mqtt.ONLINE, qos=1, retain=True)
        self._connected.set()
        # Readings published while we were away are only in the database: read them back before
        # scoring live again (the score loop does it; live readings queue meanwhile).
        self._notify(self._catchup_due)
        log.info("subscribed as %s (shard %d/%d)", self.settings.client_id, *self.shard)
        reader = asyncio.create_task(self._watch(client))
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait([reader, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not stopping.done():
            stopping.cancel()
            reader.result()  # the watcher only ends by raising (a lost connection)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        self._notify(self._intake_closed)
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await client.unsubscribe([READINGS_FILTER, SENML_FILTER], timeout=2)
        # Alerts still draining need this connection; leave only when the sink is done.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._sink_done.wait(), self._timeout_s())
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(topic, scorer_mqtt.OFFLINE, qos=1, retain=True, timeout=2)
        self._connected.clear()

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        """Raise when the connection is lost: readings never reach ``client.messages`` (they
        are tapped in ``_on_message``), but its iterator still fails on a disconnect."""
        async for _ in client.messages:
            pass

    def _on_message(self, topic: str, payload: bytes) -> None:
        """One PUBLISH, on the event loop thread as it is read off the socket: route it and
        queue it for scoring. Must not raise (see ``scorer.mqtt.tap_messages``)."""
        cache = self._topic_cache
        target = cache.get(topic, _UNROUTED)
        if target is _UNROUTED:
            target = self._route(topic)
            if len(cache) < 1_000_000:  # bounded: topics come from outside
                cache[topic] = target
        if target is None or self._stopping.is_set():  # other shard, or intake stopped
            return
        kind, sid = target
        try:
            self._score_q.put_nowait((time.time(), kind, sid, payload))
        except asyncio.QueueFull:  # bounded: scoring is behind; the ingestor still stores it
            self.metrics.skipped.labels("queue_full").inc()
            return
        self._wake()

    def _route(self, topic: str) -> tuple[TopicKind, str] | None:
        """``(kind, sensor_id)`` for a readings topic of this shard, else None (ignored)."""
        try:
            kind, sid = parse_topic(topic)
        except WireError as exc:
            self.metrics.rejected.labels(exc.reason).inc()
            return None
        return (kind, sid) if in_shard(sid, self.shard) else None

    def _remaining_s(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def _timeout_s(self) -> float | None:
        """Time left before the shutdown deadline, None (no limit) while running."""
        return None if self._deadline == float("inf") else self._remaining_s()

    # ------------------------------------------------------------------ scoring

    async def _score_loop(self, pool: AsyncConnectionPool) -> None:
        try:
            next_deadman = time.monotonic() + self.settings.scorer_deadman_check_s
            next_shadow = time.monotonic() + self.settings.scorer_shadow_stats_s
            while True:
                if self._catchup_due.is_set() and not self._stopping.is_set():
                    self._catchup_due.clear()
                    await self._catch_up(pool)
                batch = await self._next_batch(next_deadman)
                await self._swap_models()
                if time.monotonic() >= next_shadow and self.models is not None:
                    next_shadow = time.monotonic() + self.settings.scorer_shadow_stats_s
                    await self._record_shadow(self.models)
                check = time.monotonic() >= next_deadman
                if check:
                    next_deadman = time.monotonic() + self.settings.scorer_deadman_check_s
                if batch or check:
                    t0 = time.perf_counter()
                    result = await self._in_state_thread(self._process, batch, check)
                    await self._hand_over(result, len(batch), time.perf_counter() - t0)
                if self._drained() or self._remaining_s() <= 0:
                    return
        finally:
            if self.models is not None:
                await self._record_shadow(self.models)
            await self._sink_q.put(_DONE)

    async def _swap_models(self) -> None:
        """Between batches: put models loaded by a SIGHUP reload in service."""
        if self._pending_models is not None:
            if self.models is not None:
                await self._record_shadow(self.models)
            self.models, self._pending_models = self._pending_models, None
            self._show_models(self.models)

    async def _hand_over(self, result: BatchResult, size: int, elapsed_s: float) -> None:
        self._account(result, size, elapsed_s)
        for item in result.events:
            await self._sink_q.put(item)

    def _drained(self) -> bool:
        return self._intake_closed.is_set() and self._score_q.empty()

    async def _next_batch(self, next_deadman: float) -> list[Inbound]:
        """The next micro-batch; empty when the deadman check is due, a catch-up is asked for
        or intake has closed. Waiting costs one future and one timer, not a task per event
        (at 1,000 readings/s most batches are a single reading)."""
        q = self._score_q
        if q.empty():
            if self._intake_closed.is_set() or self._catchup_due.is_set():
                return []
            loop = asyncio.get_running_loop()
            self._wakeup = waiter = loop.create_future()
            timer = loop.call_later(max(0.0, next_deadman - time.monotonic()), _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._wakeup = None
            if q.empty():
                return []
        batch = [q.get_nowait()]
        await self._fill(batch)
        return batch

    def _wake(self) -> None:
        """Resolve the score loop's wait, if it is waiting."""
        waiter = self._wakeup
        if waiter is not None:
            _resolve(waiter)

    def _notify(self, event: asyncio.Event) -> None:
        event.set()
        self._wake()

    def _in_state_thread(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        """Run ``fn`` in the state thread: calls never overlap, so per-sensor state needs no
        lock (and a dedicated thread skips the default executor's context copy per batch)."""
        return asyncio.get_running_loop().run_in_executor(self._state_thread, fn, *args)

    async def _fill(self, batch: list[Inbound]) -> None:
        size = self.settings.scorer_batch_size
        linger_until = time.monotonic() + self.settings.scorer_batch_max_age_ms / 1000.0
        q = self._score_q
        while len(batch) < size:
            while not q.empty() and len(batch) < size:
                batch.append(q.get_nowait())
            left = linger_until - time.monotonic()
            if len(batch) >= size or left <= 0 or self._stopping.is_set():
                return
            # Sleep rather than wait_for(q.get()): a get cancelled by a timeout can race with
            # the put that completes it, and a reading must never be lost in the seam.
            await asyncio.sleep(left)

    # ------------------------------------------------------------------ catch-up

    async def _catch_up(self, pool: AsyncConnectionPool) -> None:
        """Score what was stored while the connection was down, then let live scoring resume.

        The rule that keeps every reading scored once: per sensor, a reading is scored only when
        it is newer than that sensor's last scored reading. The catch-up reads exactly those from
        the database (oldest first, through the same path as live readings, alerts included); the
        live copies of them that queued meanwhile are then not newer and are skipped (counted as
        ``caught_up``). A sensor the catch-up did not cover keeps its old mark, so its live
        readings are scored however late they are. Only a reading older than what its sensor
        already had scored is skipped as ``stale``: the forecaster's state has moved past it.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.settings.scorer_catchup_settle_s)
        if self._stopping.is_set():
            return
        t0 = time.monotonic()
        floor = datetime.now(UTC) - timedelta(seconds=self.settings.scorer_catchup_window_s)
        try:
            # No thread call runs now (this loop owns them), so the marks can be read here.
            found = await load_catch_up(
                pool,
                shard=self.shard,
                marks=dict(self._last_time),
                floor=floor,
                max_readings=self.settings.scorer_catchup_max_readings,
            )
        except StorageError as exc:
            self.metrics.catchups.labels("failed").inc()
            log.warning("catch-up skipped, scoring live only: %s", exc)
            return
        self.metrics.catchups.labels("truncated" if found.truncated else "ok").inc()
        self.metrics.catchup_readings.inc(len(found.readings))
        self._caught_up = set()
        scored = await self._score_stored(found)
        log.info(
            "catch-up: %d stored readings read, %d scored in %.2fs%s",
            len(found.readings),
            scored,
            time.monotonic() - t0,
            " (bound hit: older readings left out)" if found.truncated else "",
        )

    async def _score_stored(self, found: CatchUp) -> int:
        size = self.settings.scorer_batch_size
        scored = 0
        for k in range(0, len(found.readings), size):
            chunk = found.readings[k : k + size]
            t0 = time.perf_counter()
            result = await self._in_state_thread(
                self._process_stored, chunk, found.received[k : k + size]
            )
            scored += result.scored
            await self._hand_over(result, len(chunk), time.perf_counter() - t0)
        return scored

    def _process_stored(self, readings: list[Reading], received: list[float]) -> BatchResult:
        """Score readings read back from the database (a worker thread, like ``_process``)."""
        result = BatchResult()
        fresh, arrivals = self._causal(list(zip(readings, received, strict=True)), result)
        self._caught_up.update((r.sensor_id, r.time) for r in fresh)
        # No arrival time for the alerts: their latency is the outage's, not the service's.
        self._score(fresh, arrivals, datetime.now(UTC), result, live=False)
        return result

    # ------------------------------------------------------------------ one micro-batch

    def _process(self, batch: list[Inbound], check_silence: bool) -> BatchResult:
        """Decode, score and alert one micro-batch (runs in a worker thread, one at a time)."""
        result = BatchResult()
        now = datetime.now(UTC)
        readings, arrived = self._decode(batch, now, result)
        self._score(readings, arrived, now, result, live=True)
        if check_silence:
            version = self._active().version
            for e in self.alerts.check_silence(now, self._interval_of, model_version=version):
                result.events.append((e, None))
        return result

    def _score(
        self,
        readings: list[Reading],
        arrived: list[float],
        now: datetime,
        result: BatchResult,
        *,
        live: bool,
    ) -> None:
        if not readings:
            return
        models = self._active()
        version = models.version
        scores = models.scorer.score_batch(readings)
        result.scored += len(scores)
        observe = self.alerts.observe
        last_at, received_at = None, now
        for score, at in zip(scores, arrived, strict=True):
            if at != last_at:  # the readings of one message share their arrival
                last_at, received_at = at, datetime.fromtimestamp(at, UTC)
            events = observe(score, model_version=version, now=now, received_at=received_at)
            if events:
                result.events.extend((e, at if live else None) for e in events)
        if models.shadow is not None and models.tally is not None:
            # Same readings, same order: the candidate's verdicts, never alerted on.
            candidate = models.shadow.score_batch(readings)
            models.tally.add(scores, candidate, models.shadow.model_version)
            models.tally.active_alerts += sum(e.state == "open" for e, _ in result.events)

    def _decode(
        self, batch: list[Inbound], now: datetime, result: BatchResult
    ) -> tuple[list[Reading], list[float]]:
        limits = self.settings.limits
        pairs: list[tuple[Reading, float]] = []
        for arrived, kind, sid, payload in batch:
            try:
                decoded = decode(kind, payload, topic_sensor_id=sid, now=now, limits=limits)
            except WireError as exc:
                result.rejected[exc.reason] = result.rejected.get(exc.reason, 0) + 1
                continue
            for err in decoded.errors:
                result.rejected[err.reason] = result.rejected.get(err.reason, 0) + 1
            pairs.extend(zip(decoded.readings, repeat(arrived)))
        return self._causal(pairs, result)

    def _causal(
        self, pairs: list[tuple[Reading, float]], result: BatchResult
    ) -> tuple[list[Reading], list[float]]:
        """Time order, and per sensor nothing at or before what was already scored (QoS 1
        redeliveries, the overlap with the warm-start history or a catch-up, late backlogs)."""
        pairs.sort(key=lambda p: p[0].time)
        readings: list[Reading] = []
        arrivals: list[float] = []
        last = self._last_time
        for r, arrived in pairs:
            prev = last.get(r.sensor_id)
            if prev is not None and r.time <= prev:
                if (r.sensor_id, r.time) in self._caught_up:
                    result.caught_up += 1
                else:
                    result.stale += 1
                continue
            last[r.sensor_id] = r.time
            readings.append(r)
            arrivals.append(arrived)
        return readings, arrivals

    def _interval_of(self, sensor_id: str) -> float | None:
        registered = self._intervals_s.get(sensor_id)
        if registered is not None:
            return registered
        return self._active().scorer.expected_interval_s(sensor_id)

    def _active(self) -> ModelSet:
        if self.models is None:
            raise RuntimeError("scoring before the models were loaded")
        return self.models

    def _account(self, result: BatchResult, size: int, elapsed_s: float) -> None:
        m = self.metrics
        if size:
            m.batch_seconds.observe(elapsed_s)
            m.batch_size.observe(size)
        m.readings_scored.inc(result.scored)
        self.scored_total += result.scored
        for reason, n in result.rejected.items():
            m.rejected.labels(reason).inc(n)
        if result.stale:
            m.skipped.labels("stale").inc(result.stale)
        if result.caught_up:
            m.skipped.labels("caught_up").inc(result.caught_up)
        if result.events:
            m.open_alerts.set(len(self.alerts.open_incidents()))

    # ------------------------------------------------------------------ alert sink

    async def _sink(self, pool: AsyncConnectionPool) -> None:
        try:
            while True:
                first = await self._sink_q.get()
                items = [first] if first is not None else []
                done = first is None
                while not done and not self._sink_q.empty() and len(items) < 500:
                    nxt = self._sink_q.get_nowait()
                    done = nxt is None
                    if nxt is not None:
                        items.append(nxt)
                if items:
                    await self._deliver(pool, items)
                if done:
                    return
        finally:
            self._sink_done.set()

    async def _deliver(self, pool: AsyncConnectionPool, items: list[Outbound]) -> None:
        events = [e for e, _ in items]
        t_store = time.time()
        # Database first: an alert that was published but not stored could be re-derived and
        # published again after a crash; stored-then-published cannot be duplicated.
        if not await self._retry("store", lambda: store_events(pool, events)):
            return
        t_stored = time.time()
        for event, arrived in items:
            t_publish = time.time()
            if await self._retry("publish", _bind(self._publish, event)):
                self._count_alert(event, arrived)
                if arrived is not None and _timed(event):
                    self._observe_stages(event, arrived, t_store, t_stored, t_publish)

    def _observe_stages(
        self, event: AnomalyEvent, arrived: float, t_store: float, t_stored: float, t_publish: float
    ) -> None:
        """Where this alert's time went (wall clock, seconds): the event's ``emitted_at`` is
        when the batch that raised it started."""
        stage = self.metrics.alert_stage
        started = event.emitted_at.timestamp()
        stage.labels("wait").observe(max(0.0, started - arrived))
        stage.labels("process").observe(max(0.0, t_store - started))
        stage.labels("store").observe(t_stored - t_store)
        stage.labels("publish").observe(time.time() - t_publish)

    async def _publish(self, event: AnomalyEvent) -> None:
        await asyncio.wait_for(self._connected.wait(), self._timeout_s())
        await self._client.publish(
            alerts_topic(event.sensor_id), encode_event(event), qos=1, timeout=10
        )

    async def _retry(self, stage: str, op: Callable[[], Awaitable[None]]) -> bool:
        """Retry ``op`` with backoff until it succeeds or the shutdown deadline passes."""
        backoff_s = 0.2
        while True:
            try:
                await op()
                return True
            except (StorageError, aiomqtt.MqttError, TimeoutError) as exc:
                self.metrics.alert_errors.labels(stage).inc()
                if self._remaining_s() <= backoff_s:
                    log.error("giving up on alert %s at shutdown: %s", stage, exc)
                    return False
                log.warning("alert %s failed (%s); retrying in %.1fs", stage, exc, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, _BACKOFF_MAX_S)

    def _count_alert(self, event: AnomalyEvent, arrived: float | None) -> None:
        m = self.metrics
        if event.state == "open":
            m.alerts_opened.labels(event.kind, event.severity).inc()
        elif event.state == "update":
            m.alerts_updated.labels(event.kind, event.severity).inc()
        else:
            m.alerts_resolved.labels(event.kind, event.severity).inc()
        if arrived is not None and _timed(event):
            now = time.time()
            m.alert_latency.labels("device").observe(max(0.0, now - event.timestamp.timestamp()))
            m.alert_latency.labels("received").observe(max(0.0, now - arrived))


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _timed(event: AnomalyEvent) -> bool:
    """Whether an alert with an arrival time measures the service: anomaly alerts that open or
    update. A deadman alert has no reading behind it, and a caught-up one (no arrival time)
    measures the outage rather than the service."""
    return event.kind == "anomaly" and event.state != "resolved"


def _bind(
    fn: Callable[[AnomalyEvent], Awaitable[None]], event: AnomalyEvent
) -> Callable[[], Awaitable[None]]:
    return lambda: fn(event)
