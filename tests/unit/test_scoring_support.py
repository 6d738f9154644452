"""Helpers shared by the scoring-library tests (no tests here): small fitted models, series."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from core.registry import LoadedModel
from core.scoring import Scorer, ScoringConfig
from core.scoring.training import fit_detector, select_forecaster, synthetic_series
from core.wire import Reading

START = datetime(2026, 1, 1, tzinfo=UTC)


@functools.lru_cache(maxsize=1)
def models() -> tuple[LoadedModel, LoadedModel]:
    """A forest and forecaster fitted on small synthetic normal data (cached per process)."""
    series = synthetic_series(5, n_series=6, length=600)
    forest, finfo = fit_detector(series, ScoringConfig(), seed=5)
    spec, sinfo = select_forecaster(series, ScoringConfig())
    return (
        LoadedModel("anomaly_detector", 1, forest, finfo),
        LoadedModel("forecaster", 1, spec, sinfo),
    )


def ar_series(
    n: int,
    seed: int,
    *,
    scale: float = 1.0,
    offset: float = 20.0,
    phi: float = 0.7,
    interval_s: float = 60.0,
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    e = rng.normal(size=n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    t = START.timestamp() + interval_s * np.arange(n)
    return t, offset + scale * x


def readings(sid: str, t: np.ndarray, x: np.ndarray) -> list[Reading]:
    return [
        Reading(sensor_id=sid, time=datetime.fromtimestamp(float(ti), UTC), value=float(xi))
        for ti, xi in zip(t, x, strict=True)
    ]


def at(i: int, interval_s: float = 60.0) -> datetime:
    return START + timedelta(seconds=interval_s * i)


def forecast_coverage(
    scorer: Scorer,
    x: np.ndarray,
    origins: Iterable[int],
    horizons: Sequence[int],
    step_s: float,
    t0: float,
    long_run: bool = True,
) -> dict[int, tuple[float, float]]:
    """Empirical 80 % / 95 % coverage (percent) of ``scorer.forecast`` at each horizon.

    ``x`` is ``(sensors, readings)`` at ``step_s`` from ``t0``; at each origin (increasing) the
    scorer has streamed every reading before it, then each sensor forecasts ``max(horizons)``
    steps and the readings that follow are checked against the intervals.
    """
    sids = [f"s{i}" for i in range(x.shape[0])]
    hmax = max(horizons)
    hits = {h: [0, 0] for h in horizons}
    total = done = 0
    for origin in origins:
        t_idx = np.arange(done, origin)
        ids = [s for _ in t_idx for s in sids]
        t = np.repeat(t_idx * step_s + t0, len(sids))
        for _ in scorer.score_arrays(ids, t, x[:, done:origin].T.reshape(-1)):
            pass
        done = origin
        for i, sid in enumerate(sids):
            path = scorer.forecast(sid, hmax, long_run)
            for h in horizons:
                pt, y = path[h - 1], x[i, origin + h - 1]
                hits[h][0] += pt.lower_80 <= y <= pt.upper_80
                hits[h][1] += pt.lower_95 <= y <= pt.upper_95
            total += 1
    return {h: (100.0 * a / total, 100.0 * b / total) for h, (a, b) in hits.items()}
