"""The scoring models and per-sensor state this API process serves from.

Nothing is fitted on the request path. On startup the active ``anomaly_detector`` and
``forecaster`` are loaded from the registry (checksums and feature list verified) into one
``core.scoring.Scorer``; sensors seen recently are warm-started from their stored history; and a
background task feeds every cached sensor the readings stored since, so forecasts and anomaly
checks answer from state that is at most ``api_refresh_interval_s`` behind the database.

Every call into the scorer runs on one dedicated worker thread: the scorer's state is not
thread-safe, one thread serialises access without locks, and the event loop never runs numpy.
A missing or corrupt model leaves ``status`` not-ready with the reason; the ML endpoints then
answer 503 and everything else keeps working. A failed reload keeps the previous models.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from psycopg_pool import AsyncConnectionPool

from api import queries
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from core import registry
from core.errors import ModelError, NotFoundError
from core.registry import LoadedModel
from core.scoring import FEATURE_NAMES, ForecastPoint, Score, Scorer, ScoringConfig
from core.wire import Reading

log = logging.getLogger(__name__)

T = TypeVar("T")

DETECTOR = "anomaly_detector"
FORECASTER = "forecaster"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Readings fed per scorer call during refresh: keeps each hold of the scorer thread short, so a
# request queued behind a refresh waits at most one chunk.
_REFRESH_CHUNK = 256
_REFRESH_PER_SENSOR_CAP = 10_000
_PREWARM_SENSORS_PER_CALL = 100
# Readings scored in one scorer call when detect requests are batched.
_MAX_BATCH_READINGS = 2048
# Per-sensor rows of ``Engine`` that scoring a reading may change (see ``_score_what_if``).
_ENGINE_ROWS = ("state", "lags", "theta", "cov", "hst_ref", "hst_latest")


@dataclass(frozen=True, slots=True)
class Forecast:
    points: list[ForecastPoint]
    model_version: str
    interval_s: float | None


@dataclass(frozen=True, slots=True)
class Scored:
    scores: list[Score]
    model_version: str


@dataclass(frozen=True, slots=True)
class _DetectJob:
    scorer: Scorer
    readings: list[Reading]
    future: asyncio.Future[list[Score]]


@dataclass(frozen=True, slots=True)
class _Models:
    detector: LoadedModel
    forecaster: LoadedModel
    scorer: Scorer

    @property
    def version(self) -> str:
        return f"{self.detector.tag}+{self.forecaster.tag}"


class ModelsCache:
    def __init__(
        self,
        settings: ApiSettings,
        pool: AsyncConnectionPool,
        metrics: ApiMetrics,
        config: ScoringConfig | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.metrics = metrics
        self.config = config or self._config_from(settings)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")
        self._models: _Models | None = None
        self._error: ModelError | None = None
        # sensor id -> time of the newest reading its state has learned (LRU order).
        self._fed: OrderedDict[str, datetime] = OrderedDict()
        self._warming: dict[str, asyncio.Future[None]] = {}
        self._jobs: list[_DetectJob] = []
        self._batcher: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()

    @staticmethod
    def _config_from(settings: ApiSettings) -> ScoringConfig:
        """SCORING's overrides, as the scorer service applies them, so /predict and
        /detect_anomaly agree with its streaming scores and alerts. Except the sensor bound:
        the scorer preallocates state per sensor, and this process's bound is
        API_MAX_CACHED_SENSORS (which prewarm and the capacity error use too), whatever
        SCORING's max_sensors says; it changes no score."""
        log.info(
            "scoring overrides (SCORING): %s",
            settings.scoring_summary,
            extra={
                "scoring_overrides": settings.scoring_overrides,
                "max_sensors": settings.api_max_cached_sensors,
            },
        )
        return replace(settings.scoring_config, max_sensors=settings.api_max_cached_sensors)

    # ------------------------------------------------------------------------------ status

    @property
    def status(self) -> tuple[bool, str]:
        if self._models is not None:
            return True, "ok"
        if self._error is not None:
            return False, f"model unavailable ({self._error.reason}): {self._error.detail}"
        return False, "models not loaded yet"

    async def wait_loaded(self) -> None:
        """Until the first load attempt has finished (successfully or not)."""
        await self._loaded.wait()

    @property
    def cached_sensors(self) -> int:
        return len(self._fed)

    def info(self) -> list[dict[str, Any]]:
        models = self._models
        loaded = {DETECTOR: models.detector, FORECASTER: models.forecaster} if models else {}
        out = []
        for name in (DETECTOR, FORECASTER):
            m = loaded.get(name)
            error = None if m else self.status[1]
            out.append(
                {
                    "name": name,
                    "version": m.version if m else None,
                    "tag": m.tag if m else None,
                    "loaded": m is not None,
                    "error": error,
                    "meta": _public_meta(m.meta) if m else {},
                }
            )
        return out

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------------------ loading

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        # The copied context carries the request id into the scorer thread's log lines.
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except OverflowError as exc:  # the scorer's preallocated sensor bound
            raise ModelError("capacity", f"{exc} (API_MAX_CACHED_SENSORS)") from exc

    def _load_sync(self) -> _Models:
        models_dir = Path(self.settings.models_dir)
        detector = registry.load_active(models_dir, DETECTOR, expected_features=list(FEATURE_NAMES))
        forecaster = registry.load_active(models_dir, FORECASTER)
        try:
            scorer = Scorer(self.config, detector, forecaster)
        except (TypeError, ValueError) as exc:
            raise ModelError("incompatible", f"the scorer rejected the artifacts: {exc}") from exc
        return _Models(detector, forecaster, scorer)

    async def reload(self) -> None:
        """Load the active versions; on failure keep serving the previous ones and raise."""
        try:
            models = await self._call(self._load_sync)
        except ModelError as exc:
            log.warning("model load failed: %s", exc)
            if self._models is None:
                self._error = exc
            raise
        finally:
            self._loaded.set()
        self._models, self._error = models, None
        # A new scorer has no per-sensor state: sensors are warmed again on demand / by prewarm.
        self._fed.clear()
        self._warming.clear()
        log.info("serving models %s", models.version)

    def _require(self) -> _Models:
        if self._models is None:
            if self._error is not None:
                raise self._error
            raise ModelError("missing", "models are not loaded yet")
        return self._models

    # ------------------------------------------------------------------------------ state

    async def _ensure(self, models: _Models, sensor_id: str) -> None:
        """Make sure ``sensor_id`` has a warm state, warm-starting it from its history once.

        Concurrent requests (and the startup prewarm) share one warm-start per sensor: feeding a
        history twice would make the state learn it twice."""
        while sensor_id not in self._fed:
            pending = self._warming.get(sensor_id)
            if pending is None:
                pending = self._start_warm(models, [sensor_id], check_registered=True)
            await asyncio.shield(pending)
            if self._models is not models:  # reloaded meanwhile: warm against the new scorer
                models = self._require()
        self._fed.move_to_end(sensor_id)

    def _start_warm(
        self, models: _Models, sensor_ids: list[str], *, check_registered: bool
    ) -> asyncio.Future[None]:
        future = asyncio.ensure_future(self._warm(models, sensor_ids, check_registered))
        for sensor_id in sensor_ids:
            self._warming[sensor_id] = future

        def done(_f: asyncio.Future[None]) -> None:
            for sensor_id in sensor_ids:
                if self._warming.get(sensor_id) is future:
                    del self._warming[sensor_id]

        future.add_done_callback(done)
        return future

    async def _warm(self, models: _Models, sensor_ids: list[str], check_registered: bool) -> None:
        histories: dict[str, list[tuple[datetime, float]]] = {}
        async with self.pool.connection() as conn, conn.cursor() as cur:
            for sensor_id in sensor_ids:
                if check_registered:
                    await cur.execute(queries.SENSOR_EXISTS, (sensor_id,))
                    if await cur.fetchone() is None:
                        raise NotFoundError(f"sensor {sensor_id!r} is not registered")
                await cur.execute(
                    queries.RECENT_HISTORY, (sensor_id, self.settings.api_history_readings)
                )
                histories[sensor_id] = list(reversed(await cur.fetchall()))
        # Shared numpy rounds: warming a hundred sensors costs about as much as warming one.
        await self._call(_warm_start, models.scorer, histories)
        if self._models is models:
            for sensor_id, history in histories.items():
                self._fed[sensor_id] = history[-1][0] if history else _EPOCH

    async def refresh(self) -> int:
        """Feed every cached sensor the readings stored since its state last learned."""
        models = self._models
        if models is None or not self._fed:
            return 0
        sensors = list(self._fed)
        after = [self._fed[s] for s in sensors]
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.execute(queries.NEW_READINGS, (sensors, after, _REFRESH_PER_SENSOR_CAP))
            rows = await cur.fetchall()
        readings = [Reading(sensor_id=s, time=t, value=v) for s, t, v in rows]
        for i in range(0, len(readings), _REFRESH_CHUNK):
            if self._models is not models:
                return i  # reloaded meanwhile: the new scorer starts from fresh state
            chunk = readings[i : i + _REFRESH_CHUNK]
            await self._call(models.scorer.score_batch, chunk)
            for r in chunk:
                if r.sensor_id in self._fed:
                    self._fed[r.sensor_id] = r.time
        self.metrics.scored.inc(len(readings))
        return len(readings)

    async def prewarm(self) -> None:
        """Warm the most recently active sensors so the first requests find them ready."""
        models = self._models
        if models is None:
            return
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.execute(
                queries.RECENTLY_ACTIVE_SENSORS, (self.settings.api_max_cached_sensors,)
            )
            sensor_ids = [r[0] for r in await cur.fetchall()]
        for i in range(0, len(sensor_ids), _PREWARM_SENSORS_PER_CALL):
            await self._prewarm_some(models, sensor_ids[i : i + _PREWARM_SENSORS_PER_CALL])

    async def _prewarm_some(self, models: _Models, sensor_ids: list[str]) -> None:
        todo = [s for s in sensor_ids if s not in self._fed and s not in self._warming]
        if todo:
            await self._start_warm(models, todo, check_registered=False)

    async def run(self, stop: asyncio.Event) -> None:
        """Load, prewarm, then refresh every ``api_refresh_interval_s`` until ``stop``."""
        with contextlib.suppress(ModelError):
            await self.reload()
        try:
            await self.prewarm()
        except Exception:
            log.warning("prewarming sensor states failed", exc_info=True)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.api_refresh_interval_s)
            if stop.is_set():
                break
            try:
                await self.refresh()
            except Exception:  # the next round retries from the same watermarks
                self.metrics.refresh_errors.inc()
                log.warning("refreshing sensor states failed", exc_info=True)

    # ------------------------------------------------------------------------------ queries

    async def forecast(self, sensor_id: str, horizon: int) -> Forecast:
        models = self._require()
        await self._ensure(models, sensor_id)
        points = await self._call(models.scorer.forecast, sensor_id, horizon)
        interval = (points[1].time - points[0].time).total_seconds() if len(points) > 1 else None
        return Forecast(points, models.forecaster.tag, interval)

    async def detect(self, readings: Sequence[Reading]) -> Scored:
        """Score without learning. Concurrent requests are micro-batched: requests arriving while
        the scorer thread is busy are scored together in its next call (one set of numpy calls
        for many sensors), which is what lets one process serve a thousand checks a second."""
        models = self._require()
        for sensor_id in dict.fromkeys(r.sensor_id for r in readings):
            await self._ensure(models, sensor_id)
        future: asyncio.Future[list[Score]] = asyncio.get_running_loop().create_future()
        self._jobs.append(_DetectJob(models.scorer, list(readings), future))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._run_batches(), name="detect-batcher")
        return Scored(await future, models.detector.tag)

    async def _run_batches(self) -> None:
        while self._jobs:
            jobs: list[_DetectJob] = []
            taken = 0
            while self._jobs and (
                not jobs or taken + len(self._jobs[0].readings) <= _MAX_BATCH_READINGS
            ):
                job = self._jobs.pop(0)
                jobs.append(job)
                taken += len(job.readings)
            self.metrics.detect_batch.observe(len(jobs))
            try:
                results = await self._call(_score_jobs, [(j.scorer, j.readings) for j in jobs])
            except Exception as exc:  # handed to every waiting request; the loop goes on
                results = [exc] * len(jobs)
            for job, result in zip(jobs, results, strict=True):
                if job.future.done():  # the request was cancelled meanwhile
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)


def _warm_start(scorer: Scorer, histories: dict[str, list[tuple[datetime, float]]]) -> None:
    scorer.warm_start_many(histories)
    # A registered sensor without history still gets its (empty) state, so the scorer itself
    # answers "insufficient data: 0 of N readings" for it rather than "never seen".
    for sensor_id in histories:
        scorer.engine.slot(sensor_id)


def _score_jobs(jobs: list[tuple[Scorer, list[Reading]]]) -> list[list[Score] | Exception]:
    """Score several requests' readings, each as if it were alone.

    Requests touching disjoint sensors (of the same scorer) share one ``_score_what_if`` call;
    a request touching a sensor already in the current group waits for the next group, so no
    request's readings are ever scored in the context of another's."""
    results: list[list[Score] | Exception] = [[] for _ in jobs]
    todo = list(range(len(jobs)))
    while todo:
        group: list[int] = []
        later: list[int] = []
        sensors: set[str] = set()
        scorer = jobs[todo[0]][0]
        for i in todo:
            mine = {r.sensor_id for r in jobs[i][1]}
            if jobs[i][0] is scorer and not mine & sensors:
                group.append(i)
                sensors |= mine
            else:
                later.append(i)
        try:
            scores = _score_what_if(scorer, [r for i in group for r in jobs[i][1]])
        except OverflowError as exc:
            for i in group:
                results[i] = ModelError("capacity", f"{exc} (API_MAX_CACHED_SENSORS)")
        else:
            pos = 0
            for i in group:
                n = len(jobs[i][1])
                results[i] = scores[pos : pos + n]
                pos += n
        todo = later
    return results


def _score_what_if(scorer: Scorer, readings: list[Reading]) -> list[Score]:
    """Score readings against the live state *without keeping anything they teach it*.

    Stop-gap until ``core.scoring`` offers a non-learning scoring call (requested in the API's
    report): the touched sensors' engine rows are copied, ``score_batch`` runs (so a batch is
    scored in order, each reading in the context of the ones before it, exactly as if streamed),
    and the rows are put back. Runs on the scorer thread, so nothing else sees the interim state.
    """
    eng = scorer.engine
    # Allocate slots first: allocation may grow (replace) the arrays we are about to copy.
    slots = np.array(sorted({eng.slot(r.sensor_id) for r in readings}), dtype=np.int64)
    saved = [(name, getattr(eng, name)[slots].copy()) for name in _ENGINE_ROWS]
    try:
        return scorer.score_batch(readings)
    finally:
        for name, rows in saved:
            getattr(eng, name)[slots] = rows


def _public_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The parts of meta.json worth showing a client (no file paths)."""
    keys = ("trained_at", "data_window", "features", "metrics", "parameters", "libraries", "sha256")
    return {k: meta[k] for k in keys if k in meta}
