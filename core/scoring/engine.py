"""Per-sensor streaming state and the scoring step over it.

All sensors' state lives in preallocated numpy arrays, one row per sensor. ``Engine.run`` hands
a batch of readings to the compiled kernel (``kernel.run_batch``), which processes them in the
given order, one at a time: each reading is scored against its own sensor's state built from
earlier readings only (causal by construction), judged, and learned from unless it was judged
anomalous or arrived late. This module owns the storage, the sensor → row map and the packing
of the configuration into the kernel's parameter vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from core.scoring import kernel as k
from core.scoring.config import ScoringConfig
from core.scoring.features import FEATURE_NAMES
from core.scoring.forecaster import ForecasterSpec
from core.scoring.forest import CompiledForest
from core.scoring.hst import HalfSpaceForest
from core.scoring.kernel import (
    ALARM_RATE,
    CUSUM_N,
    CUSUM_P,
    DABS_L,
    DABS_S,
    DRIFTS,
    DT_N,
    H_MIN_N,
    H_MU,
    H_N,
    H_VAR,
    HST_COUNT,
    HST_READY,
    IF_MU,
    IF_N,
    IF_PRIOR_N,
    IF_VAR,
    INFL,
    LEVEL,
    LOG_DT,
    MS,
    N_COLS,
    NL,
    QUANT,
    RUN,
    RUN_TYP,
    SCALE2,
    SHIFTS,
    SIG,
    SQRT_PI_2,
    STREAK_D,
    STREAK_N,
    STREAK_S1,
    STREAK_S2,
    T_LAST,
    VAR_S,
    X_PREV,
    N,
)

# The state layout is defined beside the compiled code that reads it; callers import it here.
__all__ = [
    "ALARM_RATE",
    "CUSUM_N",
    "CUSUM_P",
    "DABS_L",
    "DABS_S",
    "DRIFTS",
    "DT_N",
    "HST_COUNT",
    "HST_READY",
    "H_MIN_N",
    "H_MU",
    "H_N",
    "H_VAR",
    "IF_MU",
    "IF_N",
    "IF_PRIOR_N",
    "IF_VAR",
    "INFL",
    "LEVEL",
    "LOG_DT",
    "MS",
    "NL",
    "N_COLS",
    "QUANT",
    "RUN",
    "RUN_TYP",
    "SCALE2",
    "SHIFTS",
    "SIG",
    "SQRT_PI_2",
    "STREAK_D",
    "STREAK_N",
    "STREAK_S1",
    "STREAK_S2",
    "T_LAST",
    "VAR_S",
    "X_PREV",
    "Engine",
    "IfCalibration",
    "N",
    "StepResult",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]
_A = TypeVar("_A", npt.NDArray[np.float64], npt.NDArray[np.float32])
# The per-sensor arrays in ``Engine.ROW_ARRAYS`` order, as the kernel takes them.
Rows = tuple[F64, F64, F64, F64, F32, F32, F64, F64, F64]


@dataclass(frozen=True, slots=True)
class IfCalibration:
    """Distribution of the forest's raw score on normal training features (median, robust sd)."""

    median: float = 0.45
    sd: float = 0.03


@dataclass(slots=True)
class StepResult:
    score: F64
    is_anomaly: B
    warm: B
    expected: F64
    sigma: F64
    has_history: B
    detectors: F64  # (m, 3): forecast_residual, isolation_forest, half_space_trees
    z: F64  # (m, 3): the same detectors' standardised statistics before the logistic map
    features: F64
    learned: B


def _grow(a: _A, shape: tuple[int, ...]) -> _A:
    out = np.zeros(shape, dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def _float_params(
    cfg: ScoringConfig, spec: ForecasterSpec, calib: IfCalibration, q_gauss: float, norm: float
) -> F64:
    """The kernel's float parameter vector (indices ``kernel.P_*``), computed exactly as the
    step's arithmetic needs them (e.g. ``2 / (short_window + 1)`` once, not per reading)."""
    w = cfg.detector_weights
    named = {
        k.P_WARMUP: cfg.warmup_readings,
        k.P_WARM_HALF: cfg.warmup_readings // 2,
        k.P_GAP_CAP: cfg.gap_cap,
        k.P_GAP_FACTOR: cfg.gap_factor,
        k.P_SHORT_A: 2.0 / (cfg.short_window + 1.0),
        k.P_FEATURE_CLIP: cfg.feature_clip,
        k.P_VAR_ALPHA: cfg.var_alpha,
        k.P_VAR_CAP: cfg.var_cap,
        k.P_Z_VAR: cfg.z_alarm_residual / cfg.var_alarm,
        k.P_SLOPE: cfg.score_slope,
        k.P_Z_RES: cfg.z_alarm_residual,
        k.P_Z_IF: cfg.z_alarm_if,
        k.P_Z_HST: cfg.z_alarm_hst,
        k.P_W_RES: w["forecast_residual"],
        k.P_W_IF: w["isolation_forest"],
        k.P_W_HST: w["half_space_trees"],
        k.P_THRESHOLD: cfg.threshold,
        k.P_CLEAN_Z: cfg.clean_z,
        k.P_LAMBDA: cfg.rls_forgetting,
        k.P_PRIOR_VAR: cfg.rls_prior_var,
        k.P_COV_MAX: 100.0 * cfg.rls_prior_var * spec.n_coef,
        k.P_RES_ALPHA: cfg.residual_alpha,
        k.P_CUSUM_K: cfg.cusum_k,
        k.P_CUSUM_H: cfg.cusum_h,
        k.P_LEVEL_ALPHA: cfg.level_alpha,
        k.P_SCALE_ALPHA: cfg.scale_alpha,
        k.P_CALIB_ALPHA: cfg.calib_alpha,
        k.P_HST_WINDOW: cfg.hst_window,
        # Mass below which a half-space node is too sparse to descend (Tan et al.: 0.1 window).
        k.P_HST_LIMIT: 0.1 * cfg.hst_window,
        k.P_ALARM_ALPHA: cfg.alarm_rate_alpha,
        k.P_MAX_ALARM: cfg.max_alarm_rate,
        k.P_Q_GAUSS: q_gauss,
        k.P_ADAPT_AFTER: cfg.adapt_after,
        k.P_ADAPT_CONS: cfg.adapt_consistency,
        k.P_IF_MEDIAN: calib.median,
        k.P_IF_VAR0: calib.sd**2,
        k.P_IF_VAR_FLOOR: (0.5 * calib.sd) ** 2,
        k.P_H_VAR_FLOOR: 0.05**2,
        k.P_IF_NORM: norm,
        k.P_PERIOD_S: spec.period_s,
        k.P_REGIME_Z: cfg.regime_z,
        k.P_REGIME_KNOWN: cfg.regime_known,
        k.P_REGIME_MIN_NL: cfg.regime_min_readings,
        k.P_REGIME_MEMORY_S: cfg.regime_memory_s,
        k.P_REGIME_RATE_ALPHA: cfg.regime_rate_alpha,
        k.P_REGIME_SEP: cfg.regime_separation,
        k.P_REGIME_LIVED: cfg.regime_lived,
        k.P_REGIME_FREQUENT: cfg.regime_frequent,
        # A switch surprise of switch_alarm_nats counts as much as the residual's alarm z
        # (the detector takes nats through z = sqrt(2 nats), as for the repeat-run term).
        k.P_SWITCH_NATS_SCALE: 0.5 * cfg.z_alarm_residual**2 / cfg.switch_alarm_nats,
        k.P_PROFILE_WEIGHT: cfg.profile_weight,
        k.P_PROFILE_LEVEL_TAU: cfg.profile_level_tau_s,
        k.P_PROFILE_ERROR_TAU: cfg.profile_error_tau_s,
        k.P_PROFILE_Q_STEP: cfg.profile_quantile_step,
        k.P_PROFILE_CLIP: cfg.profile_clip,
        k.P_PROFILE_MEAN_TAU: cfg.profile_mean_tau_s,
        k.P_MIX_MARGIN: cfg.mixture_margin,
        k.P_MIX_GATE: cfg.mixture_gate,
        k.P_MIX_ALPHA: cfg.mixture_alpha,
    }
    if sorted(named) != list(range(k.N_PARAMS)):  # a parameter added to one side only
        raise RuntimeError("the kernel's float parameters and Engine's packing disagree")
    fp = np.zeros(k.N_PARAMS)
    fp[list(named)] = list(named.values())
    return fp


class Engine:
    """State of every sensor of one process plus the shared (read-only) models."""

    ROW_ARRAYS = (
        "state",
        "lags",
        "theta",
        "cov",
        "hst_ref",
        "hst_latest",
        "regimes",
        "profile",
        "mixture",
    )

    def __init__(
        self,
        config: ScoringConfig,
        spec: ForecasterSpec,
        forest: CompiledForest | None,
        calibration: IfCalibration,
    ) -> None:
        self.cfg = config
        self.spec = spec
        self.forest = forest
        self.calib = calibration
        self.hst = HalfSpaceForest(
            len(FEATURE_NAMES), config.hst_trees, config.hst_height, limit=4.0, seed=config.seed
        )
        self.prior = spec.prior_array()
        # |z| quantile of a Gaussian at the design alarm rate (two-sided).
        self.q_gauss = float(NormalDist().inv_cdf(1.0 - config.max_alarm_rate / 2.0))
        self.slots: dict[str, int] = {}
        self.ids: list[str] = []
        self._fp = _float_params(
            config, spec, calibration, self.q_gauss, forest.norm if forest is not None else 1.0
        )
        self._ip = np.array(
            [
                spec.p,
                spec.d,
                spec.fourier_k,
                forest is not None,
                forest.max_depth if forest is not None else 0,
                config.hst_height,
            ],
            dtype=np.int64,
        )
        self._forest = forest.arrays() if forest is not None else CompiledForest.empty_arrays()
        self._hst = (self.hst.split_feat, self.hst.split_val)
        self.state: F64 = np.zeros((0, N_COLS))
        self.lags: F64 = np.zeros((0, spec.n_lags))
        self.theta: F64 = np.zeros((0, spec.n_coef))
        self.cov: F64 = np.zeros((0, spec.n_coef, spec.n_coef))
        # float32: masses are small integers, and these two arrays dominate memory per sensor.
        self.hst_ref: F32 = np.zeros((0, config.hst_trees, self.hst.n_nodes), dtype=np.float32)
        self.hst_latest: F32 = np.zeros_like(self.hst_ref)
        # Operating levels remembered per sensor (``kernel`` regime memory section).
        self.regimes: F64 = np.zeros((0, config.regimes, k.R_COLS))
        # The long-run (seasonal profile) forecaster's time-of-day bins (``kernel`` section).
        self.profile: F64 = np.zeros((0, config.profile_bins, k.PF_COLS))
        # The values each sensor takes (``kernel`` section "value mixture").
        self.mixture: F64 = np.zeros((0, config.mixture_components, k.MX_COLS))
        self._warm_up()
        self._alloc(64)

    # ------------------------------------------------------------------ storage

    def _alloc(self, cap: int) -> None:
        """Grow every per-sensor array to ``cap`` rows, keeping existing rows."""
        for name in self.ROW_ARRAYS:
            a = getattr(self, name)
            setattr(self, name, _grow(a, (cap, *a.shape[1:])))

    def snapshot(self, slots: I64) -> list[npt.NDArray[Any]]:
        """Copies of the given sensors' rows of every per-sensor array (see ``restore``)."""
        return [getattr(self, name)[slots].copy() for name in self.ROW_ARRAYS]

    def restore(self, slots: I64, rows: list[npt.NDArray[Any]]) -> None:
        for name, saved in zip(self.ROW_ARRAYS, rows, strict=True):
            getattr(self, name)[slots] = saved

    def slot(self, sensor_id: str) -> int:
        s = self.slots.get(sensor_id)
        if s is not None:
            return s
        s = len(self.ids)
        if s >= self.cfg.max_sensors:
            raise OverflowError(f"more than {self.cfg.max_sensors} sensors in one scorer")
        if s >= self.state.shape[0]:
            self._alloc(min(2 * self.state.shape[0], self.cfg.max_sensors))
        self.slots[sensor_id] = s
        self.ids.append(sensor_id)
        return s

    # ------------------------------------------------------------------ scoring

    def run(self, sensor_ids: list[str], t: F64, x: F64) -> list[tuple[I64, StepResult]]:
        """Score a batch (any number of readings per sensor, in order) and learn from it.

        Returns one ``(positions, result)`` pair covering the whole batch (``positions`` is
        ``arange(n)``); the list form lets callers treat partial results uniformly.
        """
        n = len(sensor_ids)
        # Rows are allocated before the kernel runs: growing replaces the arrays.
        slots = np.fromiter((self.slot(s) for s in sensor_ids), dtype=np.int64, count=n)
        return [(np.arange(n), self._kernel(self._rows(), slots, t, x))]

    def _rows(self) -> Rows:
        return (
            self.state,
            self.lags,
            self.theta,
            self.cov,
            self.hst_ref,
            self.hst_latest,
            self.regimes,
            self.profile,
            self.mixture,
        )

    def _kernel(self, rows: Rows, slots: I64, t: F64, x: F64) -> StepResult:
        n = slots.shape[0]
        vals = np.empty((3, n))
        flags = np.empty((4, n), dtype=np.bool_)
        det, zz = np.empty((n, 3)), np.empty((n, 3))
        feats = np.empty((n, len(FEATURE_NAMES)))
        # Contiguous float64 inputs: another layout or dtype would make numba compile a new
        # specialisation of the kernel (seconds) on the first such call.
        k.run_batch(
            slots,
            np.ascontiguousarray(t, dtype=np.float64),
            np.ascontiguousarray(x, dtype=np.float64),
            *rows,
            self.prior,
            self._fp,
            self._ip,
            self._forest,
            self._hst,
            vals,
            flags,
            det,
            zz,
            feats,
        )
        return StepResult(
            vals[k.V_SCORE],
            flags[k.B_ANOMALY],
            flags[k.B_WARM],
            vals[k.V_EXPECTED],
            vals[k.V_SIGMA],
            flags[k.B_HISTORY],
            det,
            zz,
            feats,
            flags[k.B_LEARNED],
        )

    def _warm_up(self) -> None:
        """Compile the kernel (or load it from numba's cache) now, on throwaway rows, so the
        first real reading does not pay for it."""
        rows = tuple(np.zeros((1, *a.shape[1:]), a.dtype) for a in self._rows())
        self._kernel(cast(Rows, rows), np.zeros(1, np.int64), np.zeros(1), np.zeros(1))
