"""The online ARIMA-family forecaster: AR(p) on a differenced (d) series with Fourier seasonal
terms, whose coefficients are refined per sensor by recursive least squares (RLS).

Why this and not river's SNARIMAX or statsmodels' state-space ARIMA per reading:

* The *order* (p, d, seasonal harmonics) is chosen offline on training data
  (``training.select_forecaster``: AIC within each differencing family, a rolling-origin backtest
  between families) and shipped as a :class:`ForecasterSpec` artifact, with
  the fitted coefficients as the RLS prior. What differs between sensors (a smooth temperature vs.
  a noisy vibration) is then learned online per sensor by RLS with forgetting, which is the exact
  least-squares solution of an AR-X regression over an exponentially weighted window.
* RLS is a handful of small matrix-vector products per reading, run inside the compiled scoring
  step (``kernel.py``; the functions here are its reference, tested equal). river's SNARIMAX
  costs tens of microseconds per ``learn_one`` in pure Python (measured in
  ``benchmarks/bench_scoring.py``), which alone would cap throughput below the 40,000 readings/s
  target; refitting statsmodels per reading is orders of magnitude slower still.
* Moving-average terms are left out: with a sliding RLS an MA(q) part is well approximated by a
  few more AR lags, and AIC picks p accordingly.

Values are normalised per sensor, ``u = (x - level) / scale``, so the coefficients are scale-free
and one prior serves sensors of any unit. Seasonality uses the reading's timestamp (time of day),
not its index, so it survives gaps and irregular sampling.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

DAY_S = 86400.0
# Longest per-horizon interval calibration a spec carries (a day at 5 min).
MAX_CALIBRATED_STEPS = 288


@dataclass(frozen=True)
class ForecasterSpec:
    """Order and prior of the forecaster; the ``forecaster`` registry artifact.

    ``p``: AR lags; ``d``: differencing (0 or 1); ``fourier_k``: harmonics of the seasonal period
    (0 = no seasonality); ``period_s``: the seasonal period in seconds (a day by default);
    ``prior``: initial coefficients ``[intercept, phi_1..phi_p, a_1, b_1, .. a_k, b_k]``.
    ``interval_scale80`` / ``interval_scale95``: per-horizon multipliers (index ``h - 1``) of the
    psi-weight sd for the 80 % / 95 % intervals, calibrated on rolling-origin errors of the
    training data (``training.select_forecaster``); past the last entry the last one holds, and
    empty means 1 (the textbook interval).
    """

    p: int = 3
    d: int = 0
    fourier_k: int = 0
    period_s: float = DAY_S
    prior: tuple[float, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    interval_scale80: tuple[float, ...] = ()
    interval_scale95: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.p <= 12 or self.d not in (0, 1) or not 0 <= self.fourier_k <= 4:
            raise ValueError("ForecasterSpec needs 1 <= p <= 12, d in {0, 1}, 0 <= fourier_k <= 4")
        if self.prior and len(self.prior) != self.n_coef:
            raise ValueError(
                f"prior has {len(self.prior)} coefficients, the order needs {self.n_coef}"
            )
        scales = (self.interval_scale80, self.interval_scale95)
        if len(scales[0]) != len(scales[1]) or len(scales[0]) > MAX_CALIBRATED_STEPS:
            raise ValueError(
                "interval_scale80 and interval_scale95 need the same length, at most "
                f"{MAX_CALIBRATED_STEPS}"
            )
        if not all(math.isfinite(v) and 0.0 < v <= 100.0 for s in scales for v in s):
            raise ValueError("interval scales must be finite and in (0, 100]")

    @property
    def n_coef(self) -> int:
        return 1 + self.p + 2 * self.fourier_k

    @property
    def n_lags(self) -> int:
        """Raw values kept per sensor: p lags, one more when differencing."""
        return self.p + self.d

    def prior_array(self) -> F64:
        if self.prior:
            return np.asarray(self.prior, dtype=np.float64)
        theta = np.zeros(self.n_coef)
        # Without a fitted prior, start from persistence (u_t = u_{t-1}) for levels, zero for
        # differences: the safest guess for an unknown sensor.
        if self.d == 0:
            theta[1] = 0.9
        return theta


def as_spec(obj: Any) -> ForecasterSpec:
    """Accept a ForecasterSpec or its dict form (what a JSON-minded trainer might save)."""
    if isinstance(obj, ForecasterSpec):
        return obj
    if isinstance(obj, dict):
        keys = {"p", "d", "fourier_k", "period_s", "prior", "info"}
        keys |= {"interval_scale80", "interval_scale95"}
        args = {k: v for k, v in obj.items() if k in keys}
        for name in ("prior", "interval_scale80", "interval_scale95"):
            if name in args:
                args[name] = tuple(float(v) for v in args[name])
        return ForecasterSpec(**args)
    raise TypeError(f"forecaster artifact of type {type(obj).__name__} is not a ForecasterSpec")


def fourier_terms(t_s: F64, k: int, period_s: float) -> F64:
    """``(n, 2k)`` columns sin/cos of the first k harmonics of the period at times ``t_s``."""
    if k == 0:
        return np.empty((t_s.shape[0], 0))
    phase = (2.0 * math.pi / period_s) * np.mod(t_s, period_s)
    h = np.arange(1, k + 1, dtype=np.float64)
    ang = phase[:, None] * h[None, :]
    out = np.empty((t_s.shape[0], 2 * k))
    out[:, 0::2] = np.sin(ang)
    out[:, 1::2] = np.cos(ang)
    return out


def regressors(spec: ForecasterSpec, lags: F64, level: F64, scale: F64, t_s: F64) -> F64:
    """The regression row of each sensor: ``[1, u_{t-1}..u_{t-p}, fourier(t)]``.

    ``lags`` is ``(n, p + d)`` raw (cleaned) values, most recent first.
    """
    n = lags.shape[0]
    phi = np.empty((n, spec.n_coef))
    phi[:, 0] = 1.0
    if spec.d == 0:
        phi[:, 1 : 1 + spec.p] = (lags[:, : spec.p] - level[:, None]) / scale[:, None]
    else:
        phi[:, 1 : 1 + spec.p] = (lags[:, : spec.p] - lags[:, 1 : spec.p + 1]) / scale[:, None]
    if spec.fourier_k:
        phi[:, 1 + spec.p :] = fourier_terms(t_s, spec.fourier_k, spec.period_s)
    return phi


def to_value(spec: ForecasterSpec, pred_u: F64, lags: F64, level: F64, scale: F64) -> F64:
    """Map a normalised prediction back to the sensor's unit."""
    if spec.d == 0:
        return level + scale * pred_u
    return lags[:, 0] + scale * pred_u


def target_u(spec: ForecasterSpec, x: F64, lags: F64, level: F64, scale: F64) -> F64:
    """The normalised regression target of a new value."""
    if spec.d == 0:
        return (x - level) / scale
    return (x - lags[:, 0]) / scale


def rls_update(theta: F64, cov: F64, phi: F64, err: F64, lam: float, cov_max: float) -> None:
    """One RLS step per row, in place: ``theta += K err``, ``P = (P - K phi' P) / lam``.

    The trace of P is capped at ``cov_max`` because with forgetting, P grows without bound in
    directions the data do not excite (a constant sensor), and would then explode on the first
    change ("covariance wind-up").
    """
    p_phi = np.einsum("nij,nj->ni", cov, phi)
    denom = lam + np.einsum("ni,ni->n", phi, p_phi)
    gain = p_phi / denom[:, None]
    theta += gain * err[:, None]
    cov -= gain[:, :, None] * p_phi[:, None, :]
    cov /= lam
    # Keep P symmetric: rounding makes it drift apart, and an asymmetric P is how RLS diverges.
    cov += np.swapaxes(cov, 1, 2)
    cov *= 0.5
    tr = np.einsum("nii->n", cov)
    over = tr > cov_max
    if over.any():
        cov[over] *= (cov_max / tr[over])[:, None, None]


def stabilise(theta: F64, p: int, max_abs_sum: float = 0.999) -> None:
    """Project AR coefficients into a stable region, in place: if sum |phi_i| exceeds
    ``max_abs_sum`` (a sufficient condition for stationarity), scale them down. A free-running
    forecast of an explosive AR polynomial would otherwise run off to infinity during a long
    anomaly, when the lags are fed with forecasts."""
    ar = theta[:, 1 : 1 + p]
    total = np.abs(ar).sum(axis=1)
    over = total > max_abs_sum
    if over.any():
        ar[over] *= (max_abs_sum / total[over])[:, None]


def forecast_path(
    spec: ForecasterSpec,
    theta: F64,
    lags: F64,
    level: float,
    scale: float,
    sigma: float,
    times_s: F64,
    level_alpha: float = 0.0,
) -> tuple[F64, F64]:
    """Iterate the model ahead: mean and standard deviation of each future step.

    The h-step forecast error is ``sum_{j<h} psi_j e_{t+h-j}`` with the psi weights of the
    recursion, so its variance is ``sigma^2 * sum_{j<h} psi_j^2`` — the textbook ARIMA
    forecast-error variance, for ``sigma`` the one-step error sd. Deterministic seasonal terms add
    no variance. For d = 1 the psi weights are those of the integrated series (running sums).

    ``level_alpha``: for d = 0 the regressors are deviations from the sensor's EWMA level, which
    the engine moves by ``level_alpha * (x - level)`` after every reading. The coefficients were
    learned with that level moving (it follows a daily cycle part way), so the path moves it too,
    by the same rule on the forecasts; a frozen level (0, the plain AR recursion) pulls a
    multi-step forecast towards a stale level. A moving level also feeds every shock back into
    the forecasts after it, which the psi weights (an impulse through the same recursion) carry.

    The recursions run on plain floats: this is on the API's request path, and per-step numpy
    calls would cost more than the arithmetic (a day ahead at 5 min, 288 steps, stays well under
    a millisecond).
    """
    horizon = times_s.shape[0]
    p = spec.p
    phi = theta[1 : 1 + p].tolist()
    seas = fourier_terms(times_s, spec.fourier_k, spec.period_s) @ theta[1 + p :]
    drive = (seas + theta[0]).tolist() if spec.fourier_k else [float(theta[0])] * horizon
    if spec.d == 0 and level_alpha > 0.0:
        # In units of scale around the current level: u = (x - level0) / scale, level state 0.
        past = ((lags[:p] - level) / scale)[::-1].tolist()
        u = _level_recursion(phi, drive, past, level_alpha)
        means = level + scale * u
        psi = _level_recursion(phi, [0.0] * horizon, [0.0] * p, level_alpha, shock=1.0)
        return means, sigma * np.sqrt(np.cumsum(psi * psi))
    # The regression's own inputs: deviations from the level (d = 0) or differences (d = 1).
    past = (lags[:p] - level if spec.d == 0 else lags[:p] - lags[1 : p + 1]) / scale
    # Normalised path: u_h = drive_h + sum_i phi_i u_{h-i}, with the observed lags before h = 0.
    u = _ar_recursion(phi, drive, past[::-1].tolist())
    means = level + scale * u if spec.d == 0 else float(lags[0]) + scale * np.cumsum(u)
    psi = _ar_recursion(phi, [1.0] + [0.0] * (horizon - 1), [0.0] * p)
    if spec.d == 1:
        psi = np.cumsum(psi)
    sd = sigma * np.sqrt(np.cumsum(psi * psi))
    return means, sd


def _level_recursion(
    phi: list[float], drive: list[float], history: list[float], alpha: float, shock: float = 0.0
) -> F64:
    """The d = 0 model with its EWMA level moving: ``y_h = L_h + drive_h + sum_i phi_i
    (y_{h-i} - L_h)``, then ``L_{h+1} = L_h + alpha (y_h - L_h)``, from ``L_0 = 0``.

    ``shock`` is added to ``y_0`` (after the level has been used): with zero drive and history
    the outputs are the psi weights of the joint (values, level) recursion.
    """
    p = len(phi)
    buf = list(history)
    lev = 0.0
    keep = 1.0 - sum(phi)  # L + sum_i phi_i (y_i - L) = keep * L + sum_i phi_i y_i
    rev = slice(None, -p - 1, -1)  # the last p values, most recent first (aligned with phi)
    for d in drive:
        y = keep * lev + d + sum(map(operator.mul, phi, buf[rev])) + shock
        shock = 0.0
        buf.append(y)
        lev += alpha * (y - lev)
    return np.asarray(buf[len(history) :], dtype=np.float64)


def interval_scales(spec: ForecasterSpec, horizon: int) -> tuple[F64, F64]:
    """Multipliers of ``forecast_path``'s sd for the 80 % and 95 % intervals of steps 1..horizon.

    The psi-weight sd is exact only for a known, fixed AR model with Gaussian errors; the live
    model is re-estimated by RLS, its sigma is an EWMA and real errors have heavier tails, so the
    trainer measures on held-back training forecasts how much wider each horizon must be (see
    ``training.select_forecaster``). Beyond the calibrated horizons the last multiplier holds.
    """
    if not spec.interval_scale80:
        ones = np.ones(horizon)
        return ones, ones
    idx = np.minimum(np.arange(horizon), len(spec.interval_scale80) - 1)
    return (
        np.asarray(spec.interval_scale80, dtype=np.float64)[idx],
        np.asarray(spec.interval_scale95, dtype=np.float64)[idx],
    )


def _ar_recursion(phi: list[float], drive: list[float], history: list[float]) -> F64:
    """``y_h = drive_h + sum_i phi_i y_{h-i}`` for each h, given ``history`` (oldest first).

    With an impulse as ``drive`` and zero history this yields the psi weights of the AR
    polynomial (``psi_0 = 1``, ``psi_j = sum_i phi_i psi_{j-i}``).
    """
    p = len(phi)
    buf = list(history)
    rev = slice(None, -p - 1, -1)  # the last p values, most recent first (aligned with phi)
    for d in drive:
        buf.append(d + sum(map(operator.mul, phi, buf[rev])))
    return np.asarray(buf[len(history) :], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class LongRun:
    """A sensor's long-run forecast (``kernel`` section "seasonal profile"): the mean at each
    requested time, the 80 % / 95 % half-widths its own errors a period ahead showed, and the
    lag-1 autocorrelation ``rho`` of the deviations from it (how long a deviation persists).
    With ``grown`` the half-widths are already given per step (arrays), not a period out."""

    mean: F64
    half80: float | F64
    half95: float | F64
    rho: float
    grown: bool = False


def profile_path(offsets: F64, weights: F64, level: float, times_s: F64, period_s: float) -> F64:
    """``level`` plus the time-of-day bin's learned offset at each time. A bin never visited
    (readings sparser than the bins, or irregular) borrows its nearest visited neighbour."""
    bins = offsets.shape[0]
    seen = np.flatnonzero(weights > 0)
    if seen.size == 0:
        return np.full(times_s.shape[0], level)
    b = np.minimum((np.mod(times_s, period_s) / period_s * bins).astype(np.int64), bins - 1)
    gap = np.abs(b[:, None] - seen[None, :])
    nearest = seen[np.argmin(np.minimum(gap, bins - gap), axis=1)]
    out: F64 = level + offsets[nearest]
    return out


@functools.lru_cache(maxsize=8)
def _harmonic_design(bins: int, harmonics: int) -> F64:
    """A constant column and the first ``harmonics`` sines and cosines at each bin's centre.
    The same for every request of a configuration, so built once (read-only: it is shared)."""
    angle = 2.0 * math.pi * (np.arange(bins) + 0.5) / bins
    j = np.arange(1, harmonics + 1)
    design = np.hstack([np.ones((bins, 1)), np.sin(np.outer(angle, j)), np.cos(np.outer(angle, j))])
    design.flags.writeable = False
    return design


def smooth_profile(offsets: F64, weights: F64, noise_var: float, harmonics: int) -> F64:
    """The visited bins' offsets shrunk towards their projection on the first ``harmonics``
    harmonics of the period, as far as their departures from it look like noise.

    A bin is the mean of a few noisy visits, so it carries noise of variance about
    ``noise_var``; a few harmonics fitted to all bins average that away but cannot draw a sharp
    shape (a machine's switch, two demand peaks). The bins' mean squared departure from the
    projection is that noise plus the shape the harmonics miss; the share that is shape,
    ``tau2 / (tau2 + noise_var)``, is kept (empirical Bayes). A smooth cycle under heavy noise
    is forecast by its projection, a sharp shape by its bins as learned.
    """
    seen = weights > 0
    if harmonics < 1 or np.count_nonzero(seen) < 2 * harmonics + 2:
        return offsets
    design = _harmonic_design(offsets.shape[0], harmonics)
    coef = np.linalg.lstsq(design[seen], offsets[seen], rcond=None)[0]
    fit = design @ coef
    rough = offsets - fit
    tau2 = max(0.0, float(np.mean(rough[seen] ** 2)) - noise_var)
    keep = tau2 / (tau2 + noise_var) if tau2 + noise_var > 0.0 else 1.0
    out: F64 = np.where(seen, fit + keep * rough, offsets)
    return out


def reversion(c1: float, c2: float) -> float:
    """Per-reading persistence of a level's deviations from its long mean, from their lag-1 and
    lag-2 autocovariances ``c1``, ``c2`` (kernel section "seasonal profile"): for a level that
    decays like an AR(1) under white measurement noise, c2 / c1 is that decay, which the noise
    (unlike the lag-1 autocorrelation) does not shorten."""
    return min(max(c2 / c1, 0.0), 0.999) if c1 > 0.0 else 0.0


def blend_long_run(mean: F64, half80: F64, half95: F64, long_run: LongRun) -> tuple[F64, F64, F64]:
    """Hand the AR path over to the long-run forecast along the horizon.

    Step h keeps weight ``w = rho^h`` on the AR forecast: a deviation from the long-run
    forecast that persists (rho near 1, a wandering level) keeps the AR path in charge for long,
    one that fades within a few readings hands over quickly. The half-widths blend the same way,
    from the AR path's calibrated band towards ``q * sqrt(1 - rho^(2h))``: the growth of the
    h-step error of deviations that decay at rho (AR(1)) up to the sensor's own measured
    long-run half-width q. For AR(1) deviations both ends then agree at every step. A long
    run whose half-widths are already ``grown`` per step brings its own growth.
    """
    w = long_run.rho ** np.arange(1, mean.shape[0] + 1, dtype=np.float64)
    grow = 1.0 if long_run.grown else np.sqrt(1.0 - w * w)
    return (
        w * mean + (1.0 - w) * long_run.mean,
        w * half80 + (1.0 - w) * grow * long_run.half80,
        w * half95 + (1.0 - w) * grow * long_run.half95,
    )
