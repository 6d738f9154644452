"""Per-sensor streaming state and the vectorised scoring step.

All sensors' state lives in preallocated numpy arrays, one row per sensor. ``Engine.step`` takes
one *round* — at most one reading per sensor — gathers those sensors' rows, computes the
forecast, features and every detector for the whole round with numpy, decides, then learns from
the readings not judged anomalous and writes the rows back. A batch with several readings of one
sensor is split into rounds by the caller, so each sensor's readings are still processed one at
a time in order: the result is identical to scoring reading by reading (causal by construction:
a reading is scored against the state built from earlier readings only).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from statistics import NormalDist
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from core.scoring.config import ScoringConfig
from core.scoring.features import FEATURE_NAMES
from core.scoring.forecaster import (
    ForecasterSpec,
    regressors,
    rls_update,
    stabilise,
    to_value,
)
from core.scoring.forest import CompiledForest
from core.scoring.hst import HalfSpaceForest

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]
_A = TypeVar("_A", npt.NDArray[np.float64], npt.NDArray[np.float32])

# Columns of the per-sensor scalar state matrix.
(
    N,
    NL,
    T_LAST,
    LOG_DT,
    DT_N,
    X_PREV,
    LEVEL,
    SCALE2,
    SIG,
    MS,
    DABS_L,
    DABS_S,
    QUANT,
    RUN,
    RUN_TYP,
    CUSUM_P,
    CUSUM_N,
    STREAK_N,
    STREAK_S1,
    STREAK_S2,
    IF_MU,
    IF_VAR,
    IF_N,
    H_MU,
    H_VAR,
    H_N,
    HST_COUNT,
    HST_READY,
    DRIFTS,
    SHIFTS,
    STREAK_D,
    ALARM_RATE,
    INFL,
    VAR_S,
) = range(34)
N_COLS = 34

# The IF calibration prior counts as this many readings of the sensor's own.
IF_PRIOR_N = 50.0
# The half-space trees' calibration needs this many reference-window scores before it is trusted.
H_MIN_N = 20.0
SQRT_PI_2 = 1.2533141373155  # E|e| = sigma * sqrt(2/pi) for Gaussian e


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


def split_rounds(slots: I64) -> list[I64]:
    """Positions of a batch grouped into rounds: round k holds every sensor's k-th reading, so
    slots within a round are unique and each sensor's readings keep their order."""
    n = slots.shape[0]
    if n <= 1:
        return [np.arange(n)]
    order = np.argsort(slots, kind="stable")
    s_sorted = slots[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s_sorted)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    occ = np.empty(n, dtype=np.int64)
    occ[order] = np.arange(n) - run_start
    if n == 0 or occ.max() == 0:
        return [np.arange(n)]
    by_occ = np.argsort(occ, kind="stable")
    bounds = np.r_[0, np.flatnonzero(np.diff(occ[by_occ])) + 1, n]
    return [by_occ[a:b] for a, b in pairwise(bounds.tolist())]


def _clip(a: F64, lo: F64 | float, hi: F64 | float) -> F64:
    # np.clip costs several microseconds of Python-level dispatch per call; on the per-round
    # hot path (one round per reading when a single series is replayed) that adds up.
    out: F64 = np.minimum(np.maximum(a, lo), hi)
    return out


def _sigmoid(z: F64) -> F64:
    return 1.0 / (1.0 + np.exp(-_clip(z, -50.0, 50.0)))


class Engine:
    """State of every sensor of one process plus the shared (read-only) models."""

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
        k, nodes = spec.n_coef, self.hst.n_nodes
        self.state: F64 = np.zeros((0, N_COLS))
        self.lags: F64 = np.zeros((0, spec.n_lags))
        self.theta: F64 = np.zeros((0, k))
        self.cov: F64 = np.zeros((0, k, k))
        # float32: masses are small integers, and these two arrays dominate memory per sensor.
        self.hst_ref: F32 = np.zeros((0, config.hst_trees, nodes), dtype=np.float32)
        self.hst_latest: F32 = np.zeros((0, config.hst_trees, nodes), dtype=np.float32)
        self._if_raw: F64 = np.zeros(0)
        self._h_raw: F64 = np.zeros(0)
        self._paths: I64 = np.zeros((0, 0, 0), dtype=np.int64)
        self._z: F64 = np.zeros((0, 3))
        self._alloc(64)

    # ------------------------------------------------------------------ storage

    def _alloc(self, cap: int) -> None:
        """Grow every per-sensor array to ``cap`` rows, keeping existing rows."""
        k, nodes, trees = self.spec.n_coef, self.hst.n_nodes, self.cfg.hst_trees
        self.state = _grow(self.state, (cap, N_COLS))
        self.lags = _grow(self.lags, (cap, self.spec.n_lags))
        self.theta = _grow(self.theta, (cap, k))
        self.cov = _grow(self.cov, (cap, k, k))
        self.hst_ref = _grow(self.hst_ref, (cap, trees, nodes))
        self.hst_latest = _grow(self.hst_latest, (cap, trees, nodes))

    ROW_ARRAYS = ("state", "lags", "theta", "cov", "hst_ref", "hst_latest")

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

    def run(self, sensor_ids: list[str], t: F64, x: F64) -> list[tuple[I64, StepResult]]:
        """Score a batch (any number of readings per sensor, in order) round by round."""
        slots = np.fromiter(
            (self.slot(s) for s in sensor_ids), dtype=np.int64, count=len(sensor_ids)
        )
        return [(pos, self.step(slots[pos], t[pos], x[pos])) for pos in split_rounds(slots)]

    def _init_rows(self, st: F64, lags: F64, theta: F64, cov: F64, new: B, t: F64, x: F64) -> None:
        st[new] = 0.0
        st[new, T_LAST] = t[new]
        st[new, X_PREV] = x[new]
        st[new, LEVEL] = x[new]
        st[new, MS] = x[new]
        st[new, QUANT] = np.inf
        st[new, IF_MU] = self.calib.median
        st[new, IF_VAR] = self.calib.sd**2
        st[new, INFL] = 1.0
        st[new, VAR_S] = 1.0
        st[new, ALARM_RATE] = self.q_gauss
        lags[new] = x[new, None]
        theta[new] = self.prior
        cov[new] = np.eye(self.spec.n_coef) * self.cfg.rls_prior_var

    # ------------------------------------------------------------------ the step

    def step(self, slots: I64, t: F64, x: F64) -> StepResult:
        """Score one round (unique ``slots``) and learn from it; see the module docstring."""
        cfg = self.cfg
        st = self.state[slots]
        lags, theta, cov = self.lags[slots], self.theta[slots], self.cov[slots]
        new = st[:, N] == 0
        if new.any():
            self._init_rows(st, lags, theta, cov, new, t, x)
        has_history = ~new
        dt = t - st[:, T_LAST]
        late = dt < 0
        typical = np.exp(st[:, LOG_DT])
        gap = np.where((st[:, DT_N] > 0) & (dt > 0), dt / typical, 1.0)
        gap = _clip(gap, 1.0, cfg.gap_cap)
        band_mult = np.where(gap > cfg.gap_factor, np.sqrt(gap), 1.0)

        level = st[:, LEVEL]
        quant = np.where(np.isfinite(st[:, QUANT]), st[:, QUANT], 0.0)
        tiny = 1e-9 * np.abs(level) + 1e-12
        floor = np.maximum(0.5 * quant, tiny)
        scale = np.maximum(np.sqrt(st[:, SCALE2]), floor)
        phi = regressors(self.spec, lags, level, scale, t)
        # A forecast more than 20 long-run scales from the level is never credible (a model
        # still settling, or one gone wrong): fall back towards the level.
        pred_u = _clip(np.einsum("nk,nk->n", phi, theta), -20.0, 20.0)
        expected = to_value(self.spec, pred_u, lags, level, scale)
        sig0 = np.maximum(st[:, SIG], floor)
        sig = sig0 * band_mult * st[:, INFL]
        resid = x - expected
        z_r = resid / sig

        feats, aux = self._features(st, x, z_r, scale, sig, floor, gap)
        # Short-window variance test on the residuals: EWMA of z^2 (each term capped at
        # var_cap, so one outlier cannot trigger it). Several large residuals in a row — a
        # noise burst whose single readings may each stay inside the band — push it up.
        var_s = st[:, VAR_S] + cfg.var_alpha * (np.minimum(z_r * z_r, cfg.var_cap) - st[:, VAR_S])
        st[:, VAR_S] = np.where(late, st[:, VAR_S], var_s)
        det = self._detect(st, slots, feats, z_r, aux["run_nats"], var_s)
        w = cfg.detector_weights
        weighted = det * np.array(
            [w["forecast_residual"], w["isolation_forest"], w["half_space_trees"]]
        )
        warm = (st[:, NL] >= cfg.warmup_readings) & (st[:, H_N] >= H_MIN_N)
        # No verdict during warm-up: the detectors are not calibrated yet, so the ensemble score
        # is reported as 0 (the per-detector scores stay visible for diagnosis).
        score = np.where(warm, weighted.max(axis=1), 0.0)
        is_anom = warm & (score >= cfg.threshold) & has_history
        learn = ~is_anom & ~late

        self._calibrate_residual(st, ~late & (st[:, NL] >= 30), z_r)
        dev = x - st[:, LEVEL]
        self._learn(
            st,
            lags,
            theta,
            cov,
            slots,
            learn,
            late,
            t,
            x,
            dt,
            phi,
            pred_u,
            scale,
            expected,
            resid,
            sig0,
            sig,
            feats,
            aux,
        )
        self._adapt(st, lags, is_anom, dev, x, aux["absdx"], late)
        self.state[slots] = st
        self.lags[slots], self.theta[slots], self.cov[slots] = lags, theta, cov
        return StepResult(
            score, is_anom, warm, expected, sig, has_history, det, self._z, feats, learn
        )

    def _features(
        self, st: F64, x: F64, z_r: F64, scale: F64, sig: F64, floor: F64, gap: F64
    ) -> tuple[F64, dict[str, F64]]:
        cfg = self.cfg
        a_s = 2.0 / (cfg.short_window + 1.0)
        s_ref = np.maximum(scale, sig)
        dx = x - st[:, X_PREV]
        absdx = np.abs(dx)
        dscale = np.maximum(st[:, DABS_L] * SQRT_PI_2, floor) * np.sqrt(gap)
        dabs_s = (1.0 - a_s) * st[:, DABS_S] + a_s * absdx
        eps = floor
        run = np.where(dx == 0.0, st[:, RUN] + 1.0, 0.0)
        f = np.empty((x.shape[0], len(FEATURE_NAMES)))
        f[:, 0] = (x - st[:, LEVEL]) / s_ref
        f[:, 1] = z_r
        f[:, 2] = (x - st[:, MS]) / s_ref
        f[:, 3] = dx / dscale
        f[:, 4] = np.log((dabs_s + eps) / (st[:, DABS_L] + eps))
        # Surprise of the current run of identical values under the sensor's learned rate of
        # exact repeats: -log P(run) = run * -log p_repeat. A continuous sensor (p ~ 0) is
        # suspicious after two repeats, an integer-quantised one only after a long run.
        p_rep = _clip(st[:, RUN_TYP], 1e-3, 0.999)
        run_nats = run * -np.log(p_rep)
        f[:, 5] = run_nats
        np.minimum(np.maximum(f, -cfg.feature_clip, out=f), cfg.feature_clip, out=f)
        return f, {"absdx": absdx, "dabs_s": dabs_s, "run": run, "run_nats": run_nats}

    def _detect(self, st: F64, slots: I64, feats: F64, z_r: F64, run_nats: F64, var_s: F64) -> F64:
        cfg = self.cfg
        m = feats.shape[0]
        det = np.zeros((m, 3))
        zz = np.zeros((m, 3))
        # The forecaster's predictive distribution is a mixture: an exact repeat of the last
        # value with the sensor's learned repeat probability, else the Gaussian band. Its
        # surprise is the larger of the band's |z| and the repeat-run surprise expressed as a
        # z of equal tail probability (sqrt(2 * nats); slightly conservative). A frozen value
        # sits inside the band, so only the second term can see it. The third term is the
        # residual-variance test, scaled so that its alarm level maps onto the residual's.
        z_var = var_s * (cfg.z_alarm_residual / cfg.var_alarm)
        z_res = np.maximum(np.maximum(np.abs(z_r), np.sqrt(2.0 * run_nats)), z_var)
        zz[:, 0] = z_res
        det[:, 0] = _sigmoid(cfg.score_slope * (z_res - cfg.z_alarm_residual))
        if self.forest is not None:
            raw = self.forest.anomaly_score(feats)
            sd = np.sqrt(np.maximum(st[:, IF_VAR], (0.5 * self.calib.sd) ** 2))
            z_if = (raw - st[:, IF_MU]) / sd
            det[:, 1] = _sigmoid(cfg.score_slope * (z_if - cfg.z_alarm_if))
            zz[:, 1] = z_if
            self._if_raw = raw
        else:
            self._if_raw = np.zeros(m)
        paths = self.hst.flat_index(slots, self.hst.paths(feats))
        h_raw = self.hst.score(self.hst_ref, paths, cfg.hst_window)
        sd_h = np.sqrt(np.maximum(st[:, H_VAR], 0.05**2))
        z_h = (h_raw - st[:, H_MU]) / sd_h
        ready = st[:, HST_READY] > 0
        det[:, 2] = np.where(ready, _sigmoid(cfg.score_slope * (z_h - cfg.z_alarm_hst)), 0.0)
        zz[:, 2] = np.where(ready, z_h, 0.0)
        self._z = zz
        self._h_raw, self._paths = h_raw, paths
        return det

    # ------------------------------------------------------------------ learning

    def _learn(
        self,
        st: F64,
        lags: F64,
        theta: F64,
        cov: F64,
        slots: I64,
        learn: B,
        late: B,
        t: F64,
        x: F64,
        dt: F64,
        phi: F64,
        pred_u: F64,
        scale: F64,
        expected: F64,
        resid: F64,
        sig0: F64,
        sig: F64,
        feats: F64,
        aux: dict[str, F64],
    ) -> None:
        cfg = self.cfg
        adv = ~late
        # Timing is learned from every in-order reading: an anomalous value still arrived.
        timed = adv & (dt > 0)
        a_dt = np.maximum(0.05, 1.0 / (st[:, DT_N] + 1.0))
        st[:, LOG_DT] = np.where(
            timed,
            st[:, LOG_DT] + a_dt * (np.log(np.maximum(dt, 1e-6)) - st[:, LOG_DT]),
            st[:, LOG_DT],
        )
        st[:, DT_N] += timed
        if learn.any():
            self._learn_model(
                st, theta, cov, learn, t, x, phi, pred_u, scale, expected, resid, sig0, lags, aux
            )
            self._learn_detectors(st, slots, learn, aux)
        # Raw, unconditional state: what the last readings looked like, anomalous or not.
        # State (lags, short mean) follows every reading, but an anomalous one only through a
        # winsorised copy: an outlier moves it by at most ``clean_z`` sigmas, while a persistent
        # change is still followed within a few readings and the free-running forecast can
        # never run away from the data (parameters, by contrast, learn from normal readings only).
        lim = cfg.clean_z * sig
        cleaned = np.where(learn, x, _clip(x, expected - lim, expected + lim))
        if lags.shape[1] > 1:
            lags[adv, 1:] = lags[adv, :-1]
        lags[adv, 0] = cleaned[adv]
        a_s = 2.0 / (cfg.short_window + 1.0)
        st[:, MS] = np.where(adv, st[:, MS] + a_s * (cleaned - st[:, MS]), st[:, MS])
        st[:, X_PREV] = np.where(adv, x, st[:, X_PREV])
        st[:, DABS_S] = np.where(adv, aux["dabs_s"], st[:, DABS_S])
        st[:, RUN] = np.where(adv, aux["run"], st[:, RUN])
        st[:, T_LAST] = np.where(adv, t, st[:, T_LAST])
        st[:, N] += adv

    def _learn_model(
        self,
        st: F64,
        theta: F64,
        cov: F64,
        learn: B,
        t: F64,
        x: F64,
        phi: F64,
        pred_u: F64,
        scale: F64,
        expected: F64,
        resid: F64,
        sig0: F64,
        lags: F64,
        aux: dict[str, F64],
    ) -> None:
        cfg = self.cfg
        ln = st[:, NL] + 1.0
        first = st[:, SIG] == 0.0
        # Huber-style clipping: one wild reading during warm-up must not wreck the model.
        lim = np.where(first, np.inf, 4.0 * sig0)
        r_c = _clip(resid, -lim, lim)
        # err = target_u - pred_u, which for both d = 0 and d = 1 is the residual over scale.
        # RLS waits until the level and scale used to normalise are established; before that a
        # residual over a near-zero scale would throw the coefficients far off.
        fit = learn & (st[:, NL] >= 2 * self.spec.n_coef + 5)
        if fit.any():
            th, cv = theta[fit], cov[fit]
            err = _clip((r_c / scale)[fit], -5.0, 5.0)
            rls_update(
                th,
                cv,
                phi[fit],
                err,
                cfg.rls_forgetting,
                cov_max=100.0 * cfg.rls_prior_var * self.spec.n_coef,
            )
            stabilise(th, self.spec.p)
            theta[fit], cov[fit] = th, cv
        a_sig = np.maximum(cfg.residual_alpha, 1.0 / ln)
        sig_new = np.where(
            first,
            np.abs(resid) * SQRT_PI_2,
            st[:, SIG] + a_sig * (np.abs(r_c) * SQRT_PI_2 - st[:, SIG]),
        )
        st[:, SIG] = np.where(learn, sig_new, st[:, SIG])
        # Drift detection: two-sided CUSUM of standardised residuals of learned readings. When it
        # fires the forecaster's coefficients have gone stale; resetting the covariance makes RLS
        # relearn them within tens of readings instead of hundreds.
        zc = _clip(resid / np.maximum(sig0, 1e-300), -4.0, 4.0)
        warm = st[:, NL] >= cfg.warmup_readings
        gp = np.maximum(0.0, st[:, CUSUM_P] + zc - cfg.cusum_k)
        gn = np.maximum(0.0, st[:, CUSUM_N] - zc - cfg.cusum_k)
        fired = learn & warm & ((gp > cfg.cusum_h) | (gn > cfg.cusum_h))
        st[:, CUSUM_P] = np.where(learn, np.where(fired, 0.0, gp), st[:, CUSUM_P])
        st[:, CUSUM_N] = np.where(learn, np.where(fired, 0.0, gn), st[:, CUSUM_N])
        if fired.any():
            cov[fired] = np.eye(self.spec.n_coef) * cfg.rls_prior_var
            st[fired, DRIFTS] += 1.0
        a_l = np.maximum(cfg.level_alpha, 1.0 / ln)
        a_sc = np.maximum(cfg.scale_alpha, 1.0 / ln)
        dev = x - st[:, LEVEL]
        st[:, SCALE2] = np.where(
            learn, st[:, SCALE2] + a_sc * (dev * dev - st[:, SCALE2]), st[:, SCALE2]
        )
        st[:, LEVEL] = np.where(learn, st[:, LEVEL] + a_l * dev, st[:, LEVEL])
        absdx = aux["absdx"]
        has_prev = st[:, N] > 0
        a_d = np.maximum(cfg.scale_alpha, 1.0 / np.maximum(st[:, NL], 1.0))
        upd_d = learn & has_prev
        st[:, DABS_L] = np.where(
            upd_d, st[:, DABS_L] + a_d * (absdx - st[:, DABS_L]), st[:, DABS_L]
        )
        nz = upd_d & (absdx > 0)
        st[:, QUANT] = np.where(nz, np.minimum(st[:, QUANT], absdx), st[:, QUANT])
        rep = (aux["run"] > 0).astype(np.float64)
        st[:, RUN_TYP] = np.where(
            upd_d, st[:, RUN_TYP] + a_d * (rep - st[:, RUN_TYP]), st[:, RUN_TYP]
        )
        st[:, NL] += learn

    def _learn_detectors(self, st: F64, slots: I64, learn: B, aux: dict[str, F64]) -> None:
        cfg = self.cfg
        warm_l = learn & (st[:, NL] > cfg.warmup_readings // 2)
        # Per-sensor calibration of the forest's raw score, starting from the training prior.
        a_if = np.maximum(cfg.calib_alpha, 1.0 / (st[:, IF_N] + IF_PRIOR_N))
        d_if = self._if_raw - st[:, IF_MU]
        st[:, IF_MU] = np.where(warm_l, st[:, IF_MU] + a_if * d_if, st[:, IF_MU])
        st[:, IF_VAR] = np.where(
            warm_l, (1 - a_if) * (st[:, IF_VAR] + a_if * d_if * d_if), st[:, IF_VAR]
        )
        st[:, IF_N] += warm_l
        ready = learn & (st[:, HST_READY] > 0)
        a_h = np.maximum(cfg.calib_alpha, 1.0 / (st[:, H_N] + 1.0))
        d_h = self._h_raw - st[:, H_MU]
        st[:, H_MU] = np.where(ready, st[:, H_MU] + a_h * d_h, st[:, H_MU])
        st[:, H_VAR] = np.where(ready, (1 - a_h) * (st[:, H_VAR] + a_h * d_h * d_h), st[:, H_VAR])
        st[:, H_N] += ready
        idx = np.flatnonzero(learn)
        self.hst.learn(self.hst_latest, self._paths[:, idx])
        st[:, HST_COUNT] += learn
        full = learn & (st[:, HST_COUNT] >= cfg.hst_window)
        if full.any():
            fs = slots[full]
            self.hst_ref[fs] = self.hst_latest[fs]
            self.hst_latest[fs] = 0.0
            st[full, HST_COUNT] = 0.0
            st[full, HST_READY] = 1.0

    def _calibrate_residual(self, st: F64, live: B, z_r: F64) -> None:
        """Per-sensor false-alarm calibration of the residual detector.

        Some sensors are legitimately jumpy (a load switching between levels, a machine starting
        and stopping): their residuals are heavy-tailed and a Gaussian band flags every jump.
        Each sensor tracks, in the log domain by stochastic approximation, the |z| level that
        *onsets* of band exceedance (a reading above it after one below it) pass at a rate of
        ``max_alarm_rate``; sigma is inflated by that level over the Gaussian one. Counting
        onsets, not readings, means one long incident moves the calibration once, while a
        sensor that jumps every few minutes moves it every time.
        """
        cfg = self.cfg
        z = np.abs(z_r) * st[:, INFL]  # undo the current inflation: track the raw statistic
        logq = np.log(st[:, ALARM_RATE])
        above = z > st[:, ALARM_RATE]
        onset = above & (st[:, STREAK_N] == 0)
        step = cfg.alarm_rate_alpha * (onset.astype(np.float64) - cfg.max_alarm_rate)
        q_new = np.maximum(np.exp(logq + step), self.q_gauss)
        upd = live & (onset | ~above)
        st[:, ALARM_RATE] = np.where(upd, q_new, st[:, ALARM_RATE])
        st[:, INFL] = np.maximum(1.0, st[:, ALARM_RATE] / self.q_gauss)

    def _adapt(self, st: F64, lags: F64, is_anom: B, dev: F64, x: F64, absdx: F64, late: B) -> None:
        """Accept a persistent change as the new normal instead of alerting forever.

        Parameters learn from normal readings only, so a sensor whose level (or noise) moves for
        good would otherwise be anomalous forever. A run of ``adapt_after`` consecutive
        anomalous readings whose deviations from the level are consistent (|mean| >=
        adapt_consistency * sd: a level shift, not a noise burst) — or any anomalous run three
        times that long (a lasting change of regime) — is accepted: the level, short mean and
        forecaster lags re-anchor on the new values, and the residual sigma, scale and typical
        |difference| are raised to what the run showed if it was noisier than the old normal.
        """
        cfg = self.cfg
        act = is_anom & ~late
        for col, v in (
            (STREAK_N, 1.0),
            (STREAK_S1, dev),
            (STREAK_S2, dev * dev),
            (STREAK_D, absdx),
        ):
            st[:, col] = np.where(act, st[:, col] + v, np.where(late, st[:, col], 0.0))
        n = np.maximum(st[:, STREAK_N], 1.0)
        mean = st[:, STREAK_S1] / n
        sd = np.sqrt(np.maximum(st[:, STREAK_S2] / n - mean * mean, 0.0))
        consistent = np.abs(mean) >= cfg.adapt_consistency * sd
        shift = ((st[:, STREAK_N] >= cfg.adapt_after) & consistent) | (
            st[:, STREAK_N] >= 3 * cfg.adapt_after
        )
        if shift.any():
            delta = mean[shift]
            st[shift, LEVEL] += delta
            st[shift, MS] += delta
            lags[shift] += (x[shift] - lags[shift, 0])[:, None]
            sd_s = sd[shift]
            st[shift, SIG] = np.maximum(st[shift, SIG], sd_s)
            st[shift, SCALE2] = np.maximum(st[shift, SCALE2], sd_s * sd_s)
            st[shift, DABS_L] = np.maximum(st[shift, DABS_L], st[shift, STREAK_D] / n[shift])
            for col in (STREAK_N, STREAK_S1, STREAK_S2, STREAK_D, CUSUM_P, CUSUM_N):
                st[shift, col] = 0.0
            st[shift, SHIFTS] += 1.0
