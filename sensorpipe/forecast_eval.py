"""Rolling-origin evaluation of the forecaster against baselines and peer models.

For each origin (a point in the held-out part of a series) every method forecasts the next
``horizon`` steps from the data up to the origin only; the errors against what really came are
pooled per method. Methods:

* ``sensorpipe`` — the streaming ``Scorer``: it reads the series once, in order, updating each
  sensor's state as a live scorer would, and at each origin calls ``Scorer.forecast``; its cost per
  origin is the streaming update since the previous origin plus the forecast;
* ``seasonal_naive`` — the value one season earlier, with the textbook interval
  ``sigma_m * sqrt(ceil(h / m))`` (``sigma_m``: sd of the seasonal differences before the origin);
* ``autoarima_fourier`` — statsforecast ``AutoARIMA`` with daily Fourier terms as regressors
  (dynamic harmonic regression; a seasonal ARIMA with a period of 96 readings does not fit in
  minutes), refitted at every origin;
* ``autoets`` — statsforecast ``AutoETS`` with the season length, refitted at every origin.

Series are put on a regular grid (the typical interval); a missing reading is interpolated for
the models' input and left out of the errors. MASE divides the MAE by the in-sample MAE of the
seasonal-naive one-step-in-a-season forecast over the data before the origin (Hyndman and
Koehler, 2006), so it is comparable between series; below 1 beats that naive forecast in-sample.
"""

from __future__ import annotations

import functools
import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.registry import LoadedModel
from core.scoring import Scorer, ScoringConfig
from core.scoring.forecaster import fourier_terms
from sensorpipe.datasets import SensorSeries

F64 = npt.NDArray[np.float64]
Z80, Z95 = 1.2816, 1.9600
DAY_S = 86400.0
PEERS = ("autoarima_fourier", "autoets")


@dataclass(slots=True)
class Grid:
    """A series on a regular time grid: ``y`` has NaN where no reading exists."""

    t0: float
    step_s: float
    y: F64
    filled: F64  # y with gaps linearly interpolated, for the models' inputs

    @classmethod
    def of(cls, s: SensorSeries) -> Grid:
        t = np.array([p[0].timestamp() for p in s.points])
        x = np.array([p[1] for p in s.points])
        step = float(np.median(np.diff(t)))
        idx = np.rint((t - t[0]) / step).astype(np.int64)
        y = np.full(int(idx[-1]) + 1, np.nan)
        y[idx] = x
        ok = np.isfinite(y)
        filled = np.interp(np.arange(len(y)), np.flatnonzero(ok), y[ok])
        return cls(float(t[0]), step, y, filled)

    def times(self, lo: int, hi: int) -> F64:
        return self.t0 + self.step_s * np.arange(lo, hi, dtype=np.float64)


@dataclass(slots=True)
class Forecast:
    mean: F64
    lo80: F64
    hi80: F64
    lo95: F64
    hi95: F64


@dataclass(slots=True)
class Pooled:
    """Errors of one method on one series, pooled over origins."""

    abs_err: list[float] = field(default_factory=list)
    sq_err: list[float] = field(default_factory=list)
    scaled: list[float] = field(default_factory=list)  # per-origin MAE / in-sample scale
    in80: list[bool] = field(default_factory=list)
    in95: list[bool] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # per request: fit + predict, or forecast
    update_s_per_reading: float = math.nan  # ours: the streaming update, per reading
    # Per origin: points scored and how many of them fell inside each interval (``resampled``).
    n_by_origin: list[int] = field(default_factory=list)
    in80_by_origin: list[int] = field(default_factory=list)
    in95_by_origin: list[int] = field(default_factory=list)

    def row(self) -> dict[str, float]:
        return {
            "mae": float(np.mean(self.abs_err)),
            "rmse": float(np.sqrt(np.mean(self.sq_err))),
            "mase": float(np.mean(self.scaled)),
            "cov80": 100.0 * float(np.mean(self.in80)),
            "cov95": 100.0 * float(np.mean(self.in95)),
            "seconds_per_origin": float(np.mean(self.seconds)),
            "update_s_per_reading": self.update_s_per_reading,
        }


def seasonal_naive(g: Grid, origin: int, horizon: int, season: int) -> Forecast:
    h = np.arange(1, horizon + 1)
    k = np.ceil(h / season).astype(np.int64)
    mean = g.filled[origin - season * k + h]
    hist = g.filled[: origin + 1]
    sigma = float(np.std(hist[season:] - hist[:-season], ddof=1))
    sd = sigma * np.sqrt(k)
    return Forecast(mean, mean - Z80 * sd, mean + Z80 * sd, mean - Z95 * sd, mean + Z95 * sd)


def _peer(name: str, g: Grid, origin: int, horizon: int, season: int, window: int) -> Forecast:
    from statsforecast.models import AutoARIMA, AutoETS

    lo = max(0, origin + 1 - window)
    y = g.filled[lo : origin + 1]
    if name == "autoets":
        # ETS seasonal state has one value per step of the season; longer ones are not fitted.
        m = season if season <= 24 else 1
        fc = AutoETS(season_length=m).fit(y).predict(h=horizon, level=[80, 95])
    else:
        x_all = fourier_terms(g.times(lo, origin + 1 + horizon), 2, DAY_S)
        fc = (
            AutoARIMA(season_length=1)
            .fit(y, X=x_all[: len(y)])
            .predict(h=horizon, X=x_all[len(y) :], level=[80, 95])
        )
    return Forecast(
        *(np.asarray(fc[k], dtype=np.float64) for k in ("mean", "lo-80", "hi-80", "lo-95", "hi-95"))
    )


def peer_forecast(
    name: str, g: Grid, origin: int, *, horizon: int, season: int, window: int = 1344
) -> Forecast:
    """A peer (one of ``PEERS``) refitted on the ``window`` readings up to ``origin``."""
    return _peer(name, g, origin, horizon, season, window)


class _Ours:
    """The streaming scorer, fed up to each origin in turn."""

    def __init__(
        self,
        s: SensorSeries,
        g: Grid,
        config: ScoringConfig,
        detector: LoadedModel | None,
        forecaster: LoadedModel | None,
    ) -> None:
        self.scorer = Scorer(config, detector, forecaster)
        self.sid = s.sensor_id
        self.g = g
        self.t = np.array([p[0].timestamp() for p in s.points])
        self.x = np.array([p[1] for p in s.points])
        self.fed = 0
        self.update_s = 0.0

    def __call__(self, origin: int, horizon: int) -> Forecast:
        # Feeding the stream is not part of a forecast request (a live scorer does it anyway):
        # it is timed apart, so the per-request cost is the forecast alone.
        upto = int(np.searchsorted(self.t, self.g.t0 + origin * self.g.step_s, side="right"))
        if upto > self.fed:
            t0 = time.perf_counter()
            sl = slice(self.fed, upto)
            for _ in self.scorer.score_arrays(
                [self.sid] * (upto - self.fed), self.t[sl], self.x[sl]
            ):
                pass
            self.fed = upto
            self.update_s += time.perf_counter() - t0
        pts = self.scorer.forecast(self.sid, horizon)
        # The scorer steps at its learned typical interval from the last reading; on a regular
        # grid that is the grid itself, so step h is grid index origin + h.
        return Forecast(
            *(
                np.array([getattr(p, f) for p in pts])
                for f in ("mean", "lower_80", "upper_80", "lower_95", "upper_95")
            )
        )


def origins_for(n: int, start: int, horizon: int, count: int) -> list[int]:
    """``count`` origins spread evenly over ``[start, n - horizon - 1]``."""
    last = n - horizon - 1
    if last < start:
        return []
    if count <= 1:
        return [last]
    return sorted({int(v) for v in np.rint(np.linspace(start, last, count))})


def evaluate_series(
    s: SensorSeries,
    *,
    season: int,
    horizon: int,
    origins: Sequence[int],
    config: ScoringConfig,
    detector: LoadedModel | None,
    forecaster: LoadedModel | None,
    methods: Sequence[str] = ("sensorpipe", "seasonal_naive", *PEERS),
    peer_window: int = 1344,
) -> dict[str, Pooled]:
    """Pooled errors per method on one series over the given grid origins."""
    g = Grid.of(s)
    ours = _Ours(s, g, config, detector, forecaster)
    runners: dict[str, Callable[[int], Forecast]] = {
        "sensorpipe": lambda o: ours(o, horizon),
        "seasonal_naive": lambda o: seasonal_naive(g, o, horizon, season),
    }
    for peer in PEERS:
        runners[peer] = functools.partial(
            peer_forecast, peer, g, horizon=horizon, season=season, window=peer_window
        )
    out = {m: Pooled() for m in methods}
    # An origin is "now" at a reading the scorer has seen: move one that falls in a gap back to
    # the last observed reading, so every method forecasts from the same information.
    observed = np.flatnonzero(np.isfinite(g.y))
    snapped = sorted(
        {int(observed[np.searchsorted(observed, o, side="right") - 1]) for o in origins}
    )
    for o in snapped:
        actual = g.y[o + 1 : o + 1 + horizon]
        ok = np.isfinite(actual)
        hist = g.filled[: o + 1]
        scale = float(np.mean(np.abs(hist[season:] - hist[:-season])))
        for m in methods:
            # As timeit does: a collection of what earlier methods left behind (the peers
            # allocate plenty) must not be charged to whichever method it lands in.
            gc.collect()
            gc.disable()
            try:
                t0 = time.perf_counter()
                before = ours.update_s
                fc = runners[m](o)
                elapsed = time.perf_counter() - t0 - (ours.update_s - before)
            finally:
                gc.enable()
            _pool(out[m], fc, actual, ok, scale, elapsed)
    if "sensorpipe" in out and ours.fed:
        out["sensorpipe"].update_s_per_reading = ours.update_s / ours.fed
    return out


def _pool(
    acc: Pooled, fc: Forecast, actual: F64, ok: npt.NDArray[np.bool_], scale: float, elapsed: float
) -> None:
    err = (actual - fc.mean)[ok]
    acc.abs_err.extend(np.abs(err).tolist())
    acc.sq_err.extend((err**2).tolist())
    acc.scaled.append(float(np.mean(np.abs(err))) / scale if scale > 0 else math.nan)
    a = actual[ok]
    in80 = (a >= fc.lo80[ok]) & (a <= fc.hi80[ok])
    in95 = (a >= fc.lo95[ok]) & (a <= fc.hi95[ok])
    acc.in80.extend(in80.tolist())
    acc.in95.extend(in95.tolist())
    acc.n_by_origin.append(int(a.shape[0]))
    acc.in80_by_origin.append(int(in80.sum()))
    acc.in95_by_origin.append(int(in95.sum()))
    acc.seconds.append(elapsed)


def resampled(
    series: Sequence[tuple[Pooled, Pooled, Pooled]], *, draws: int = 2000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """How firm each target's verdict is, given how few origins there are: 90 % intervals, over
    origins drawn with replacement, of our MASE over seasonal naive's and over the peer's (the
    same origins for both sides: the errors of one day move together) and of our coverage.

    ``series`` holds ``(ours, naive, peer)`` per series. With one, these are that series'
    figures. With several, each series' origins are drawn from its own, the two ratios are
    averaged over the series and the coverage is pooled over all their points: the verdict on
    the series together.

    The points of one origin are a day of one series and far from independent, so the origin,
    not the point, is what is resampled.
    """
    rng = np.random.default_rng(seed)
    vs_naive, vs_peer = np.zeros(draws), np.zeros(draws)
    in80, in95, n = np.zeros(draws), np.zeros(draws), np.zeros(draws)
    for ours, naive, peer in series:
        k = len(ours.scaled)
        idx = rng.integers(0, k, size=(draws, k))
        mine = np.asarray(ours.scaled)[idx].mean(axis=1)
        vs_naive += mine / np.asarray(naive.scaled)[idx].mean(axis=1)
        vs_peer += mine / np.asarray(peer.scaled)[idx].mean(axis=1)
        n += np.asarray(ours.n_by_origin)[idx].sum(axis=1)
        in80 += np.asarray(ours.in80_by_origin)[idx].sum(axis=1)
        in95 += np.asarray(ours.in95_by_origin)[idx].sum(axis=1)

    def band(v: F64) -> tuple[float, float]:
        lo, hi = np.quantile(v, [0.05, 0.95])
        return float(lo), float(hi)

    return {
        "vs_naive": band(vs_naive / len(series)),
        "vs_peer": band(vs_peer / len(series)),
        "cov80": band(100.0 * in80 / n),
        "cov95": band(100.0 * in95 / n),
    }
