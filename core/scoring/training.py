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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.scoring.config import ScoringConfig
from core.scoring.engine import Engine, IfCalibration
from core.scoring.features import FEATURE_NAMES
from core.scoring.forecaster import ForecasterSpec, fourier_terms
from core.scoring.forest import CompiledForest

F64 = npt.NDArray[np.float64]
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


def select_forecaster(
    series: Iterable[Series], config: ScoringConfig
) -> tuple[ForecasterSpec, dict[str, Any]]:
    """Choose (p, d, Fourier harmonics) by summed AIC over the training series.

    Each candidate is fitted by conditional least squares (the estimator statsmodels' ``AutoReg``
    uses) on each normalised series; residuals are always those of the *level* prediction, so AIC
    is comparable between d = 0 and d = 1. All candidates are scored on the same readings
    (the first ``max p + 2`` are skipped) so their likelihoods are comparable too. Seasonal terms
    enter only if they lower AIC, i.e. only "where present". The chosen model's coefficients,
    averaged over series, become the RLS prior.
    """
    cands = [(p, d, k) for p in range(1, 7) for d in (0, 1) for k in (0, 2)]
    start = max(c[0] for c in cands) + 2
    aic = dict.fromkeys(cands, 0.0)
    coefs: dict[tuple[int, int, int], list[F64]] = {c: [] for c in cands}
    n_series = 0
    span_s = 0.0
    for s in series:
        t, x = _arrays(s)
        if len(x) < start + 50:
            continue
        sd = float(np.std(x)) or 1.0
        u = (x - float(np.mean(x))) / sd
        span_s = max(span_s, float(t[-1] - t[0]))
        n_series += 1
        for c in cands:
            # Seasonal terms cannot be identified from less than a period of data.
            if c[2] and t[-1] - t[0] < 86400.0:
                aic[c] = math.inf
                continue
            xm, y = _design(t, u, *c, start)
            beta, *_ = np.linalg.lstsq(xm, y, rcond=None)
            rss = float(np.sum((y - xm @ beta) ** 2))
            n = len(y)
            aic[c] += n * math.log(max(rss, 1e-12) / n) + 2.0 * xm.shape[1]
            coefs[c].append(np.asarray(beta, dtype=np.float64))
    if n_series == 0:
        raise ValueError(f"select_forecaster needs series of at least {start + 50} readings")
    best = min(cands, key=lambda c: aic[c])
    prior = np.mean(np.stack(coefs[best]), axis=0)
    spec = ForecasterSpec(
        p=best[0], d=best[1], fourier_k=best[2], prior=tuple(float(v) for v in prior)
    )
    info = {
        "order": {"p": best[0], "d": best[1], "fourier_k": best[2]},
        "criterion": "aic",
        "aic": {
            f"p{c[0]}_d{c[1]}_k{c[2]}": (v if math.isfinite(v) else None) for c, v in aic.items()
        },
        "n_series": n_series,
        "span_s": span_s,
        "prior": list(spec.prior),
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
