"""Offline fitting of the two registry artifacts, on features from the streaming code itself.

``fit_detector`` replays each training series through a scoring :class:`Engine` (without a
forest, but with the forecaster the scorer will run beside it), collects the engineered features
of the readings that engine learned from, and fits an Isolation Forest on them, so train-time and
score-time features cannot drift apart.
``select_forecaster`` chooses the forecaster's order (p, d, seasonal harmonics) by AIC.
``write_artifact`` stores a model in the registry layout ``core.registry`` loads.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.scoring.config import ScoringConfig
from core.scoring.engine import Engine, IfCalibration
from core.scoring.features import FEATURE_NAMES
from core.scoring.forecaster import (
    DAY_S,
    MAX_CALIBRATED_STEPS,
    ForecasterSpec,
    fourier_terms,
)
from core.scoring.forest import CompiledForest

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Series = Sequence[tuple[datetime, float]]

MAX_TRAIN_ROWS = 60_000
IF_TREES = 50
IF_MAX_SAMPLES = 256


def _arrays(series: Series) -> tuple[F64, F64]:
    pts = sorted(series, key=lambda p: p[0])
    t = np.array([(p[0] if p[0].tzinfo else p[0].replace(tzinfo=UTC)).timestamp() for p in pts])
    x = np.array([float(p[1]) for p in pts])
    ok = np.isfinite(x)
    return t[ok], x[ok]


def stream_features(
    series: Iterable[Series], config: ScoringConfig, spec: ForecasterSpec | None = None
) -> F64:
    """Features of the warm readings a forest-less engine learned from, all series together."""
    engine = Engine(config, spec or ForecasterSpec(), None, IfCalibration())
    sids: list[str] = []
    ts: list[F64] = []
    xs: list[F64] = []
    for i, s in enumerate(series):
        t, x = _arrays(s)
        sids.extend([f"train-{i}"] * len(t))
        ts.append(t)
        xs.append(x)
    if not sids:
        raise ValueError("no training series")
    rows: list[F64] = []
    for _pos, res in engine.run(sids, np.concatenate(ts), np.concatenate(xs)):
        keep = res.warm & res.learned
        if keep.any():
            rows.append(res.features[keep])
    if not rows:
        raise ValueError(
            f"training series too short: none reached {config.warmup_readings} readings"
        )
    return np.concatenate(rows)


def fit_detector(
    series: Iterable[Series],
    config: ScoringConfig,
    seed: int,
    spec: ForecasterSpec | None = None,
) -> tuple[object, dict[str, Any]]:
    """Fit the Isolation Forest on streaming features; returns ``(model, info)``.

    ``spec`` is the forecaster the scorer will run beside this forest (the one
    ``select_forecaster`` chose): the ``residual_z`` and band features depend on the forecaster,
    so training them with another order would fit the forest to features it never sees live.
    ``None`` means the default ``ForecasterSpec()``, which is what a Scorer without a forecaster
    artifact uses.

    The model is a plain fitted ``sklearn.ensemble.IsolationForest`` carrying one extra attribute,
    ``sensorpipe_calibration_`` (median and robust sd of its score on the training features), which
    the scorer uses to standardise raw scores. ``info`` is meant for the artifact's meta.json.
    """
    from sklearn import __version__ as sklearn_version
    from sklearn.ensemble import IsolationForest

    spec = spec or ForecasterSpec()
    feats = stream_features(series, config, spec)
    rng = np.random.default_rng(seed)
    if feats.shape[0] > MAX_TRAIN_ROWS:
        feats = feats[rng.choice(feats.shape[0], MAX_TRAIN_ROWS, replace=False)]
    forest = IsolationForest(
        n_estimators=IF_TREES, max_samples=min(IF_MAX_SAMPLES, len(feats)), random_state=seed
    )
    forest.fit(feats)
    raw = CompiledForest(forest).anomaly_score(feats)
    median = float(np.median(raw))
    sd = float(1.4826 * np.median(np.abs(raw - median)))
    calibration = {"median": median, "sd": max(sd, 1e-4)}
    forest.sensorpipe_calibration_ = calibration
    info = {
        "features": list(FEATURE_NAMES),
        "n_rows": int(feats.shape[0]),
        "calibration": calibration,
        "params": {"n_estimators": IF_TREES, "max_samples": int(forest.max_samples_), "seed": seed},
        "library_versions": {"scikit-learn": sklearn_version},
        "raw_score_quantiles": {str(q): float(np.quantile(raw, q)) for q in (0.5, 0.99, 0.999)},
        # The forecaster the features were computed with; a scorer pairing this forest with a
        # different order sees shifted residual features.
        "forecaster_order": {"p": spec.p, "d": spec.d, "fourier_k": spec.fourier_k},
    }
    return forest, info


# --------------------------------------------------------------------------- forecaster order


def _design(t: F64, u: F64, p: int, d: int, k: int, start: int) -> tuple[F64, F64]:
    """Conditional least-squares design for predicting u[start:] (levels, comparable across d)."""
    n = len(u) - start
    cols = [np.ones(n)]
    for i in range(1, p + 1):
        if d == 0:
            cols.append(u[start - i : start - i + n])
        else:
            cols.append(u[start - i : start - i + n] - u[start - i - 1 : start - i - 1 + n])
    x = np.column_stack(cols)
    if k:
        x = np.hstack([x, fourier_terms(t[start:], k, 86400.0)])
    y = u[start:] - (u[start - 1 : start - 1 + n] if d == 1 else 0.0)
    return x, y


CANDIDATE_P = tuple(range(1, 7))
CANDIDATE_D = (0, 1)
CANDIDATE_K = (0, 2, 4)
# Rolling-origin backtest on the training data: forecasts start after this share of each series
# (the earlier part warms the streaming state up) and every ``horizon // ORIGINS_PER_HORIZON``
# readings after that.
BACKTEST_START = 0.25
ORIGINS_PER_HORIZON = 4
# Below this many backtest forecasts (pooled over series) the families are compared by AIC alone
# and the intervals stay uncalibrated: too few to estimate a 95 % quantile per horizon.
MIN_BACKTEST_ORIGINS = 40


@dataclass
class _Backtest:
    """Errors of one candidate's rolling-origin forecasts on the training series."""

    horizon: int
    scaled: list[float] = field(default_factory=list)  # per-series mean |err| / naive scale
    # |err| / psi-weight sd, per series then per step
    z_by_h: dict[int, list[list[float]]] = field(default_factory=dict)
    origins: int = 0

    @property
    def score(self) -> float:
        return float(np.mean(self.scaled)) if self.scaled else math.inf


def _aic_table(
    arrays: list[tuple[F64, F64]], cands: list[tuple[int, int, int]], start: int
) -> tuple[dict[tuple[int, int, int], float], dict[tuple[int, int, int], list[F64]]]:
    """Summed AIC and per-series CLS coefficients of every candidate order."""
    aic = dict.fromkeys(cands, 0.0)
    coefs: dict[tuple[int, int, int], list[F64]] = {c: [] for c in cands}
    for t, x in arrays:
        sd = float(np.std(x)) or 1.0
        u = (x - float(np.mean(x))) / sd
        for c in cands:
            # Seasonal terms cannot be identified from less than a period of data.
            if c[2] and t[-1] - t[0] < DAY_S:
                aic[c] = math.inf
                continue
            xm, y = _design(t, u, *c, start)
            beta, *_ = np.linalg.lstsq(xm, y, rcond=None)
            rss = float(np.sum((y - xm @ beta) ** 2))
            n = len(y)
            aic[c] += n * math.log(max(rss, 1e-12) / n) + 2.0 * xm.shape[1]
            coefs[c].append(np.asarray(beta, dtype=np.float64))
    return aic, coefs


def _horizon_of(arrays: list[tuple[F64, F64]]) -> int:
    """One day of readings at the typical interval: the horizon the forecasts are judged at."""
    step = float(np.median(np.concatenate([np.diff(t) for t, _ in arrays])))
    return int(np.clip(round(DAY_S / max(step, 1e-9)), 8, MAX_CALIBRATED_STEPS))


def _backtest(
    spec: ForecasterSpec, arrays: list[tuple[F64, F64]], config: ScoringConfig, horizon: int
) -> _Backtest:
    """Rolling-origin forecasts of the streaming scorer itself over the training series.

    All series stream through one ``Scorer``; at each origin every
    sensor forecasts ``horizon`` steps from what it has seen, exactly as the API would, and the
    readings that then arrive are compared with it. Causal: an origin's forecast uses only data
    before it (the spec's prior is the one in-sample ingredient, and RLS soon outweighs it).
    The detector deciding which readings are learned is the built-in forest: the real one is
    fitted after the forecaster, on its residual features.
    """
    from core.errors import InsufficientDataError
    from core.registry import LoadedModel
    from core.scoring.scorer import Scorer

    scorer = Scorer(config, None, LoadedModel("forecaster", 0, spec, {}))
    sids = [f"train-{i}" for i in range(len(arrays))]
    all_t = np.concatenate([t for t, _ in arrays])
    order = np.argsort(all_t, kind="stable")
    all_id = np.repeat(np.arange(len(arrays)), [len(t) for t, _ in arrays])[order]
    all_t, all_x = all_t[order], np.concatenate([x for _, x in arrays])[order]
    # Origins are readings of each series (its own sampling rate), visited in time order.
    stride = max(1, horizon // ORIGINS_PER_HORIZON)
    events = sorted(
        (float(t[j]), i)
        for i, (t, _) in enumerate(arrays)
        for j in range(int(BACKTEST_START * len(t)), len(t) - horizon, stride)
    )
    out = _Backtest(horizon)
    err_sum = np.zeros(len(arrays))
    err_n = np.zeros(len(arrays))
    scales = [_naive_scale(x, horizon) for _, x in arrays]
    fed = 0
    for origin, i in events:
        upto = int(np.searchsorted(all_t, origin, side="right"))
        if upto > fed:
            ids = [sids[k] for k in all_id[fed:upto].tolist()]
            for _ in scorer.score_arrays(ids, all_t[fed:upto], all_x[fed:upto]):
                pass
            fed = upto
        try:
            pts = scorer.forecast(sids[i], horizon, long_run=False)
        except InsufficientDataError:
            continue
        abs_e, z, h = _forecast_errors(pts, *arrays[i], config.band_z80)
        if len(h) == 0:
            continue
        out.origins += 1
        err_sum[i] += float(np.sum(abs_e)) / scales[i]
        err_n[i] += len(h)
        steps = out.z_by_h.setdefault(i, [[] for _ in range(horizon)])
        for hi, zi in zip(h.tolist(), z.tolist(), strict=True):
            steps[hi].append(zi)
    out.scaled = [float(s / n) for s, n in zip(err_sum, err_n, strict=True) if n > 0]
    return out


def _naive_scale(x: F64, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast: the MASE denominator."""
    if len(x) <= season:
        return float(np.mean(np.abs(np.diff(x)))) or 1.0
    return float(np.mean(np.abs(x[season:] - x[:-season]))) or 1.0


def _forecast_errors(pts: Sequence[Any], t: F64, x: F64, z80: float) -> tuple[F64, F64, I64]:
    """Absolute errors, errors over the psi-weight sd, and 0-based steps of the readings that
    arrived within the forecast (matched to the nearest forecast step, at most half a step off)."""
    times = np.array([p.time.timestamp() for p in pts])
    mean = np.array([p.mean for p in pts])
    # The candidates carry no interval calibration yet, so this is the psi-weight sd itself.
    sd = (np.array([p.upper_80 for p in pts]) - mean) / z80
    step = float(times[1] - times[0])  # horizons are at least 8 steps (_horizon_of)
    t0 = float(times[0]) - step
    lo, hi = np.searchsorted(t, [t0 + 0.5 * step, float(times[-1]) + 0.5 * step])
    rel = (t[lo:hi] - t0) / step
    h = np.rint(rel).astype(np.int64) - 1
    ok = (np.abs(rel - (h + 1)) < 0.5) & (h >= 0) & (h < len(pts))
    h = h[ok]
    err = np.abs(x[lo:hi][ok] - mean[h])
    return err, err / np.maximum(sd[h], 1e-12), h


def _interval_scales(bt: _Backtest, z80: float, z95: float) -> tuple[F64, F64]:
    """Per-step multipliers that make the intervals cover 80 % / 95 % of the backtest errors.

    Split-conformal in spirit: the 80 % (95 %) quantile of ``|err| / sd`` at each step, over the
    z the interval uses, pooled over neighbouring steps (a window ~20 % of h wide) to steady it.
    Each training series gets its own quantiles and the multiplier is their *median*: one
    series whose errors dwarf its psi-weight sd (a switching load, whose forecast cannot know
    when the next switch comes) must not widen every other sensor's interval. Not forced to
    grow with h: the psi-weight sd already does, and for a mean-reverting series it grows faster
    than the real errors, so the multiplier may fall.
    """
    n = bt.horizon
    m80 = np.ones(n)
    m95 = np.ones(n)
    for h in range(n):
        w = max(1, round(0.1 * (h + 1)))
        q80, q95 = [], []
        for steps in bt.z_by_h.values():
            pooled = [z for v in steps[max(0, h - w) : h + w + 1] for z in v]
            if len(pooled) >= 5:
                q80.append(float(np.quantile(pooled, 0.8)))
                q95.append(float(np.quantile(pooled, 0.95)))
        if q80:
            m80[h] = float(np.median(q80)) / z80
            m95[h] = float(np.median(q95)) / z95
    return np.clip(m80, 0.05, 100.0), np.clip(m95, 0.05, 100.0)


def select_forecaster(
    series: Iterable[Series], config: ScoringConfig
) -> tuple[ForecasterSpec, dict[str, Any]]:
    """Choose (p, d, Fourier harmonics) on the training series and calibrate the intervals.

    1. Within each differencing family (d = 0, d = 1), AIC picks p and the number of daily
       harmonics. Each candidate is fitted by conditional least squares (the estimator
       statsmodels' ``AutoReg`` uses) on each normalised series; residuals are those of the
       *level* prediction and all candidates are scored on the same readings, so the AICs are
       comparable. AIC judges one-step fit only.
    2. Between the families, a rolling-origin backtest of the streaming scorer on the training
       series decides: the mean absolute error over a day of steps, scaled per series by the
       seasonal naive MAE (MASE). The family with the best one-step fit (often d = 0) can still
       drift away over a day; the order served must be good at the horizons it is asked for.
    3. The chosen family's backtest errors calibrate the interval width per step
       (``interval_scale80``/``95``). Training data only: held-out data never enter.

    With too little data for a backtest the families are compared by AIC alone, uncalibrated.
    The chosen model's CLS coefficients, averaged over series, become the RLS prior.
    """
    cands = [(p, d, k) for p in CANDIDATE_P for d in CANDIDATE_D for k in CANDIDATE_K]
    start = max(CANDIDATE_P) + 2
    arrays = [a for a in map(_arrays, series) if len(a[1]) >= start + 50]
    if not arrays:
        raise ValueError(f"select_forecaster needs series of at least {start + 50} readings")
    aic, coefs = _aic_table(arrays, cands, start)
    # AIC picks p and the harmonics within each differencing family: seasonal terms enter only
    # where they lower AIC, so a backtest's luck cannot add a cycle that is not there.
    families = {d: min((c for c in cands if c[1] == d), key=lambda c: aic[c]) for d in CANDIDATE_D}

    def spec_of(c: tuple[int, int, int]) -> ForecasterSpec:
        prior = np.mean(np.stack(coefs[c]), axis=0)
        return ForecasterSpec(p=c[0], d=c[1], fourier_k=c[2], prior=tuple(map(float, prior)))

    horizon = _horizon_of(arrays)
    tests = {d: _backtest(spec_of(c), arrays, config, horizon) for d, c in families.items()}
    enough = all(bt.origins >= MIN_BACKTEST_ORIGINS for bt in tests.values())
    if enough:
        fam = min(tests, key=lambda d: tests[d].score)
    else:
        fam = min(families, key=lambda d: aic[families[d]])
    best = families[fam]
    spec = spec_of(best)
    if enough:
        m80, m95 = _interval_scales(tests[fam], config.band_z80, config.band_z95)
        spec = replace(
            spec, interval_scale80=tuple(map(float, m80)), interval_scale95=tuple(map(float, m95))
        )
    info = {
        "order": {"p": best[0], "d": best[1], "fourier_k": best[2]},
        "criterion": "aic",
        "family_criterion": "rolling_origin_mase" if enough else "aic",
        "aic": {
            f"p{c[0]}_d{c[1]}_k{c[2]}": (v if math.isfinite(v) else None) for c, v in aic.items()
        },
        "backtest": {
            f"p{c[0]}_d{c[1]}_k{c[2]}": {
                "mase": tests[d].score if tests[d].scaled else None,
                "origins": tests[d].origins,
            }
            for d, c in families.items()
        },
        "horizon_steps": horizon,
        "n_series": len(arrays),
        "span_s": max(float(t[-1] - t[0]) for t, _ in arrays),
        "prior": list(spec.prior),
        "interval_scale80": list(spec.interval_scale80),
        "interval_scale95": list(spec.interval_scale95),
    }
    return spec, info


# --------------------------------------------------------------------------- built-in + storage


def synthetic_series(
    seed: int, n_series: int = 12, length: int = 1200
) -> list[list[tuple[datetime, float]]]:
    """Normal (anomaly-free) series of assorted shapes for the built-in fallback forest: AR noise
    of varying memory, daily cycles, slow random walks, integer quantisation and white noise."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out: list[list[tuple[datetime, float]]] = []
    for i in range(n_series):
        interval = float(rng.choice([10.0, 60.0, 300.0]))
        t = np.cumsum(interval * np.exp(0.05 * rng.normal(size=length)))
        phi = float(rng.uniform(0.0, 0.98))
        e = rng.normal(size=length)
        ar = np.zeros(length)
        for j in range(1, length):
            ar[j] = phi * ar[j - 1] + e[j]
        daily = float(rng.uniform(0, 4)) * np.sin(2 * np.pi * t / 86400.0)
        x = 50.0 + daily + ar + 0.2 * rng.normal(size=length)
        if i % 4 == 3:
            x = np.round(x)
        out.append(
            [(start + timedelta(seconds=float(ti)), float(xi)) for ti, xi in zip(t, x, strict=True)]
        )
    return out


@functools.lru_cache(maxsize=4)
def builtin_detector(seed: int) -> tuple[object, dict[str, Any]]:
    """The fallback forest (no registry model given): fitted once per process and seed."""
    return fit_detector(synthetic_series(seed), ScoringConfig(seed=seed), seed)


def write_artifact(
    models_dir: Path | str,
    name: str,
    model: object,
    meta: dict[str, Any],
    *,
    activate: bool = True,
) -> int:
    """Store ``model`` as the next version of ``name`` through the registry; returns the version.

    A thin convenience over ``core.registry.save_version`` (+ ``activate``) for tests and
    notebooks: meta keys the registry requires but a quick caller may not have
    (``data_window``, ``parameters``, ``metrics``, ``features``) default to empty values.
    """
    from core import registry

    full: dict[str, Any] = {"data_window": {}, "parameters": {}, "metrics": {}, "features": None}
    full.update(meta)
    version = registry.save_version(models_dir, name, model, full)
    if activate:
        registry.activate(models_dir, name, version)
    return version
