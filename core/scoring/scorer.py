"""``Scorer``: the one entry point the scorer service, the API, ``train`` and ``backtest`` share.

It owns an :class:`~core.scoring.engine.Engine` (per-sensor state) built from the registry's
``anomaly_detector`` and ``forecaster`` artifacts, hands each batch to the engine's compiled
kernel (every reading in order, each against its own sensor's state), and turns the engine's
arrays into ``Score`` objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import InsufficientDataError, ModelError, NotFoundError
from core.registry import LoadedModel
from core.scoring import kernel as k
from core.scoring.config import ScoringConfig
from core.scoring.engine import (
    DT_N,
    LEVEL,
    LOG_DT,
    NL,
    QUANT,
    SCALE2,
    SIG,
    T_LAST,
    Engine,
    IfCalibration,
    StepResult,
)
from core.scoring.forecaster import (
    ForecasterSpec,
    LongRun,
    as_spec,
    blend_long_run,
    forecast_path,
    interval_scales,
    profile_path,
    reversion,
    smooth_profile,
)
from core.scoring.forest import CompiledForest
from core.scoring.results import DETECTOR_NAMES, ForecastPoint, Score
from core.wire import Reading

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

BUILTIN_VERSION = "anomaly_detector:builtin"
MAX_HORIZON = 10_000


def calibration_of(forest: Any, meta: Mapping[str, Any] | None = None) -> IfCalibration:
    """The forest's score calibration: stored on the estimator by ``fit_detector``, else meta."""
    doc = getattr(forest, "sensorpipe_calibration_", None)
    if doc is None and meta is not None:
        doc = meta.get("calibration")
    if isinstance(doc, Mapping) and "median" in doc and "sd" in doc:
        return IfCalibration(float(doc["median"]), max(float(doc["sd"]), 1e-4))
    return IfCalibration()


class Scorer:
    """Streaming, causal anomaly scoring and forecasting for many sensors.

    ``detector`` / ``forecaster`` are registry artifacts (``core.registry.load_active``). Without
    a detector (tests, notebooks) a built-in forest is fitted once per process on synthetic
    normal data by the same training code and reported as ``anomaly_detector:builtin``; without
    a forecaster the default order (AR(3), no differencing, no seasonal terms) is used.
    Services always pass loaded models.
    """

    def __init__(
        self,
        config: ScoringConfig,
        detector: LoadedModel | None = None,
        forecaster: LoadedModel | None = None,
    ) -> None:
        self.config = config
        spec = as_spec(forecaster.model) if forecaster is not None else ForecasterSpec()
        if detector is not None:
            forest_obj, meta = detector.model, detector.meta
            self.model_version = detector.tag
        else:
            from core.scoring.training import builtin_detector

            forest_obj, meta = builtin_detector(config.seed)
            self.model_version = BUILTIN_VERSION
        try:
            compiled = CompiledForest(forest_obj)
        except AttributeError as exc:
            raise ModelError(
                "incompatible", f"anomaly_detector is not a fitted forest: {exc}"
            ) from exc
        self.forecaster_version = forecaster.tag if forecaster is not None else "forecaster:default"
        self.engine = Engine(config, spec, compiled, calibration_of(forest_obj, meta))

    # ------------------------------------------------------------------ scoring

    def score_batch(self, readings: Sequence[Reading], *, learn: bool = True) -> list[Score]:
        """Score readings in order (per sensor), learning from each reading judged normal.

        ``learn=False`` scores the batch exactly the same way (each reading in the context of
        the batch's earlier ones) but then puts the touched sensors' state back, so an on-demand
        check (the API's /detect_anomaly) teaches the live models nothing.
        """
        n = len(readings)
        if n == 0:
            return []
        if not learn:
            eng = self.engine
            # Allocate first: growing the arrays replaces them, so snapshot after.
            slots = np.array(sorted({eng.slot(r.sensor_id) for r in readings}), dtype=np.int64)
            saved = eng.snapshot(slots)
            try:
                return self.score_batch(readings)
            finally:
                eng.restore(slots, saved)
        sids = [r.sensor_id for r in readings]
        t = np.fromiter((r.time.timestamp() for r in readings), dtype=np.float64, count=n)
        x = np.fromiter((r.value for r in readings), dtype=np.float64, count=n)
        out: list[Score | None] = [None] * n
        for pos, res in self._rounds(sids, t, x):
            self._emit(out, readings, pos, res)
        return out  # type: ignore[return-value]  # the engine's result covers every position

    def score_arrays(
        self, sensor_ids: Sequence[str], t: F64, x: F64
    ) -> Iterable[tuple[I64, StepResult]]:
        """Array-level scoring (backtest, benchmarks): yields ``(positions, StepResult)`` rounds."""
        return self._rounds(list(sensor_ids), t, x)

    def _rounds(self, sids: list[str], t: F64, x: F64) -> list[tuple[I64, StepResult]]:
        return self.engine.run(sids, t, x)

    def _emit(
        self, out: list[Score | None], readings: Sequence[Reading], pos: I64, res: StepResult
    ) -> None:
        thr = self.config.threshold
        z = self.config.band_z
        exp_l = res.expected.tolist()
        sig_l = res.sigma.tolist()
        hist = res.has_history.tolist()
        score_l = res.score.tolist()
        anom_l = res.is_anomaly.tolist()
        warm_l = res.warm.tolist()
        det_l = res.detectors.tolist()
        for j, p in enumerate(pos.tolist()):
            r = readings[p]
            e = exp_l[j] if hist[j] else None
            s = sig_l[j]
            out[p] = Score(
                r.sensor_id,
                r.time,
                r.value,
                score_l[j],
                anom_l[j],
                thr,
                e,
                None if e is None else e - z * s,
                None if e is None else e + z * s,
                dict(zip(DETECTOR_NAMES, det_l[j], strict=True)),
                warm_l[j],
            )

    # ------------------------------------------------------------------ state

    def warm_start(self, sensor_id: str, history: Sequence[tuple[datetime, float]]) -> None:
        """Rebuild a sensor's state from stored history (oldest first), exactly as streaming it."""
        self.warm_start_many({sensor_id: history})

    def warm_start_many(self, histories: Mapping[str, Sequence[tuple[datetime, float]]]) -> None:
        """``warm_start`` for many sensors at once, in one kernel call (the scorer calls this)."""
        sids: list[str] = []
        ts: list[float] = []
        xs: list[float] = []
        for sid, hist in histories.items():
            for when, value in sorted(hist, key=lambda p: p[0]):
                sids.append(sid)
                ts.append(_aware(when).timestamp())
                xs.append(float(value))
        if sids:
            for _ in self._rounds(sids, np.asarray(ts), np.asarray(xs)):
                pass

    def sensors(self) -> list[str]:
        return list(self.engine.ids)

    def expected_interval_s(self, sensor_id: str) -> float | None:
        slot = self.engine.slots.get(sensor_id)
        if slot is None or self.engine.state[slot, DT_N] < 1:
            return None
        return float(np.exp(self.engine.state[slot, LOG_DT]))

    def forecast(self, sensor_id: str, horizon: int, long_run: bool = True) -> list[ForecastPoint]:
        """Forecast ``horizon`` steps of the sensor's typical interval from its current state.

        The AR path with the trainer's interval calibration, handed over along the horizon to
        the sensor's long-run forecast once it has measured enough of its own errors a period
        ahead (``ScoringConfig.profile_ready``); ``long_run=False`` gives the AR path alone
        (what the trainer's backtest calibrates).
        """
        if not 1 <= horizon <= MAX_HORIZON:
            raise ValueError(f"horizon must be within 1..{MAX_HORIZON}")
        eng = self.engine
        slot = eng.slots.get(sensor_id)
        if slot is None:
            raise NotFoundError(f"no readings of sensor {sensor_id!r} have been seen")
        st = eng.state[slot]
        needed = max(self.config.warmup_readings // 2, eng.spec.n_lags + 2)
        if st[NL] < needed or st[DT_N] < 1:
            raise InsufficientDataError(
                f"sensor {sensor_id!r} has {int(st[NL])} usable readings, "
                f"forecasting needs {needed}",
                needed=needed,
                available=int(st[NL]),
            )
        step_s = float(np.exp(st[LOG_DT]))
        times = st[T_LAST] + step_s * np.arange(1, horizon + 1)
        quant = st[QUANT] if np.isfinite(st[QUANT]) else 0.0
        floor = max(0.5 * quant, 1e-9 * abs(st[LEVEL]) + 1e-12)
        scale = max(float(np.sqrt(st[SCALE2])), floor)
        sigma = max(float(st[SIG]), floor)
        # The level moves as the engine would move it over the next readings (see forecast_path).
        level_alpha = max(self.config.level_alpha, 1.0 / (float(st[NL]) + 1.0))
        mean, sd = forecast_path(
            eng.spec,
            eng.theta[slot],
            eng.lags[slot],
            float(st[LEVEL]),
            scale,
            sigma,
            times,
            level_alpha,
        )
        # Half-widths: the psi-weight sd times the per-horizon calibration the trainer measured.
        m80, m95 = interval_scales(eng.spec, horizon)
        w80 = self.config.band_z80 * m80 * sd
        w95 = self.config.band_z95 * m95 * sd
        lr = self._long_run(slot, times, mean[0], w80[0], w95[0]) if long_run else None
        if lr is not None:
            mean, w80, w95 = blend_long_run(mean, w80, w95, lr)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        # Whole-array arithmetic, then plain floats: this is on the API's request path.
        return [
            ForecastPoint(epoch + timedelta(seconds=ti), *vals)
            for ti, *vals in zip(
                times.tolist(),
                mean.tolist(),
                (mean - w80).tolist(),
                (mean + w80).tolist(),
                (mean - w95).tolist(),
                (mean + w95).tolist(),
                strict=True,
            )
        ]

    def served_offsets(self, slot: int) -> F64:
        """The sensor's profile bins (offsets from its slow level) as a forecast serves them:
        smoothed as far as their roughness looks like noise (``forecaster.smooth_profile``)."""
        prof = self.engine.profile[slot]
        # A bin averages about (2 - w) / w visits. The noise that differs from bin to bin is at
        # most the reading-to-reading (one-step) noise; slower noise moves neighbours alike.
        w = self.config.profile_weight
        noise = float(self.engine.state[slot, SIG]) ** 2 * w / (2.0 - w)
        harmonics = self.config.profile_harmonics
        return smooth_profile(prof[:, k.PF_S], prof[:, k.PF_W], noise, harmonics)

    def _long_run(
        self, slot: int, times: F64, start: float, start80: float, start95: float
    ) -> LongRun | None:
        """The sensor's long-run forecast at ``times``, or None before it has proved itself.

        The daily profile where the day has a shape (``serves_profile``), smoothed as far as
        its roughness looks like noise. Otherwise a level that returns from ``start`` (the AR
        path's first step, whose half-widths are ``start80`` / ``start95``) to the sensor's long
        mean at its measured rate phi per reading. What is left of the start's error after h steps
        is phi^h of it, and the level's own spread (the flat level's half-widths a period out)
        takes the rest of the variance.

        When "no change" has lately predicted the next reading better than the AR path (a
        level that wanders; an AR path still finding its feet after an incident), the forecast
        starts from the last reading instead (``_from_last_reading``).
        """
        st = self.engine.state[slot]
        if st[k.PE_N] < self.config.profile_ready:
            return None
        rho = float(np.clip(st[k.PR_C1] / st[k.PR_C0], 0.0, 0.999)) if st[k.PR_C0] > 0 else 0.0
        seasonal = self.serves_profile(slot)
        # One-step errors as sds: the AR path's now (SIG, its band's sigma), and that of "no
        # change" (DABS_L, the mean |x - x_prev| of learned readings).
        if st[k.DABS_L] * k.SQRT_PI_2 < st[SIG]:
            return self._from_last_reading(slot, times, rho, seasonal)
        if seasonal:
            mean = self._profile_at(slot, times)
            return LongRun(mean, float(st[k.Q80_S]), float(st[k.Q95_S]), rho)
        phi = reversion(float(st[k.RV_C1]), float(st[k.RV_C2]))
        left = phi ** np.arange(times.shape[0], dtype=np.float64)
        mean = st[k.RL] + left * (start - st[k.RL])
        q80, q95 = float(st[k.Q80_F]), float(st[k.Q95_F])
        h80 = np.sqrt(left**2 * start80**2 + (1.0 - left**2) * q80**2)
        h95 = np.sqrt(left**2 * start95**2 + (1.0 - left**2) * q95**2)
        return LongRun(mean, h80, h95, rho, grown=True)

    def serves_profile(self, slot: int) -> bool:
        """Whether the sensor's long-run forecast is its daily profile (else its returning level).

        The profile must have erred no more than the flat level a period ahead, and the day
        must have a shape. A level that wanders with no daily shape (barometric pressure) has
        two near-equal errors, and which is lower is luck; often it is the profile, the last
        days' weather imprinted on its bins. Returning to its long mean forecast such a level
        better on every training-side pressure series (``docs/ml/README.md``). Shapeless means
        both: the bins vary little against the noise a bin carries (which an incident's errors
        also make true for a while), and little against the slow variance about the long mean
        (three days' memory, which an incident barely moves for a real daily shape).
        """
        st = self.engine.state[slot]
        if st[k.MSE_S] > st[k.MSE_F]:
            return False
        cfg = self.config
        w = cfg.profile_weight
        spread = float(np.var(self.engine.profile[slot, :, k.PF_S]))
        return bool(
            spread >= cfg.profile_shapeless_noise * float(st[k.MSE_S]) * w / (2.0 - w)
            or spread >= cfg.profile_shapeless_share * float(st[k.RV_C1])
        )

    def _profile_at(self, slot: int, times: F64) -> F64:
        """The sensor's daily profile as served (smoothed) about its slow level, at ``times``."""
        weights = self.engine.profile[slot, :, k.PF_W]
        level = float(self.engine.state[slot, k.PL])
        return profile_path(
            self.served_offsets(slot), weights, level, times, self.engine.spec.period_s
        )

    def _from_last_reading(self, slot: int, times: F64, rho: float, seasonal: bool) -> LongRun:
        """The long-run forecast plus the last reading's deviation from it, fading at the
        deviations' own rate: rho (their lag-1 autocorrelation) around the profile, phi
        (``forecaster.reversion``) around the long mean of a sensor without a daily shape.

        This is an AR(1) on the deviations, started from what was last seen. The AR path's
        multi-step forecast leans on its moving level and Fourier terms, re-estimated over a
        couple of days, and on a wandering level (barometric pressure) it erred more over the
        first hours than the last reading did (``docs/ml/README.md``); so it gets no weight
        here (rho 0). The band grows from the one-step error of "no change" to the long run's
        half-widths.
        """
        st = self.engine.state[slot]
        x0 = float(self.engine.lags[slot, 0])  # the last reading, winsorised if anomalous
        if seasonal:
            # The profile at the last reading's time, then along the path.
            path = self._profile_at(slot, np.concatenate(([st[T_LAST]], times)))
            base, dev0, rate = path[1:], x0 - path[0], rho
            q80, q95 = float(st[k.Q80_S]), float(st[k.Q95_S])
        else:
            base, dev0 = np.full(times.shape[0], st[k.RL]), x0 - st[k.RL]
            rate = reversion(float(st[k.RV_C1]), float(st[k.RV_C2]))
            q80, q95 = float(st[k.Q80_F]), float(st[k.Q95_F])
        left = rate ** np.arange(1, times.shape[0] + 1, dtype=np.float64)
        sd1 = float(st[k.DABS_L]) * k.SQRT_PI_2
        z80, z95 = self.config.band_z80, self.config.band_z95
        h80 = np.sqrt(left**2 * (z80 * sd1) ** 2 + (1.0 - left**2) * q80**2)
        h95 = np.sqrt(left**2 * (z95 * sd1) ** 2 + (1.0 - left**2) * q95**2)
        return LongRun(base + left * dev0, h80, h95, 0.0, grown=True)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
