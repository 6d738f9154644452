"""Multi-step prediction intervals of ``Scorer.forecast``: their empirical coverage on simulated
series with a known noise sd must be close to nominal at every horizon.

This is the check that the h-step variance grows with the psi weights of the AR polynomial
(accumulated once more for d = 1) and that the band's sigma is the one-step error sd, not
the mean absolute residual: either mistake shows up as coverage far below 80 % / 95 %.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.registry import LoadedModel
from core.scoring import ForecasterSpec, Scorer, ScoringConfig
from core.scoring.forecaster import forecast_path
from tests.unit.test_scoring_support import forecast_coverage

HORIZONS = (1, 6, 24, 72)
N_SENSORS = 60
WARM = 600
ORIGINS = 6


def _simulate(phi: float, d: int, sigma: float, n: int, rng: np.random.Generator) -> np.ndarray:
    e = rng.normal(0.0, sigma, (N_SENSORS, n + 200))
    u = np.zeros_like(e)
    for i in range(1, u.shape[1]):
        u[:, i] = phi * u[:, i - 1] + e[:, i]
    u = u[:, 200:]
    return 50.0 + (np.cumsum(u, axis=1) if d else u)


def _coverage(phi: float, d: int, seed: int) -> dict[int, tuple[float, float]]:
    rng = np.random.default_rng(seed)
    hmax = max(HORIZONS)
    x = _simulate(phi, d, 0.5, WARM + ORIGINS * hmax + 1, rng)
    spec = ForecasterSpec(p=1, d=d, prior=(0.0, phi))
    scorer = Scorer(ScoringConfig(seed=seed), None, LoadedModel("forecaster", 1, spec, {}))
    # The forecast at origin o is made after readings [0, o).
    origins = [WARM + k * hmax for k in range(ORIGINS)]
    return forecast_coverage(scorer, x, origins, HORIZONS, 60.0, 1.7e9)


@pytest.mark.parametrize(
    ("phi", "d"),
    [(0.8, 0), (0.0, 1), (0.5, 1)],
    ids=["ar1", "random_walk", "ari11"],
)
def test_h_step_interval_coverage_is_near_nominal(phi: float, d: int) -> None:
    cov = _coverage(phi, d, seed=3)
    # 360 origins: the Monte-Carlo sd of an 80 % coverage is ~2 points (6 points is ~3 sd),
    # of a 95 % one ~1.2 points (5 points is ~4 sd).
    for h, (c80, c95) in cov.items():
        assert abs(c80 - 80.0) <= 6.0, f"h={h}: 80 % interval covers {c80:.1f} % ({cov})"
        assert abs(c95 - 95.0) <= 5.0, f"h={h}: 95 % interval covers {c95:.1f} % ({cov})"


def test_intervals_widen_with_the_horizon_for_an_integrated_series() -> None:
    rng = np.random.default_rng(4)
    x = _simulate(0.3, 1, 0.5, 800, rng)[0]
    spec = ForecasterSpec(p=1, d=1, prior=(0.0, 0.3))
    scorer = Scorer(ScoringConfig(), None, LoadedModel("forecaster", 1, spec, {}))
    t = np.arange(len(x), dtype=np.float64) * 60.0 + 1.7e9
    for _ in scorer.score_arrays(["s"] * len(x), t, x):
        pass
    path = scorer.forecast("s", 100)
    w = np.array([p.upper_95 - p.lower_95 for p in path])
    assert np.all(np.diff(w) > 0)
    # A random walk's h-step sd grows like sqrt(h); with a positive AR term, somewhat faster.
    assert w[99] / w[0] > 0.9 * np.sqrt(100)


def test_forecast_path_matches_the_closed_forms_of_ar1_and_random_walk() -> None:
    times = 1.7e9 + 60.0 * np.arange(1, 51, dtype=np.float64)
    h = np.arange(1, 51)
    # AR(1) on levels: mean reverts geometrically, Var(e_h) = sigma^2 (1 - phi^2h) / (1 - phi^2).
    spec = ForecasterSpec(p=1, d=0)
    theta = np.array([0.0, 0.8])
    mean, sd = forecast_path(spec, theta, np.array([12.0]), 10.0, 2.0, 0.5, times)
    np.testing.assert_allclose(mean, 10.0 + 2.0 * 0.8**h, rtol=1e-12)
    np.testing.assert_allclose(sd, 0.5 * np.sqrt((1 - 0.8 ** (2 * h)) / (1 - 0.64)), rtol=1e-12)
    # Random walk with drift (d = 1, phi = 0): mean grows linearly, sd like sqrt(h).
    spec = ForecasterSpec(p=1, d=1)
    theta = np.array([0.1, 0.0])
    mean, sd = forecast_path(spec, theta, np.array([5.0, 4.0]), 0.0, 3.0, 0.5, times)
    np.testing.assert_allclose(mean, 5.0 + 0.3 * h, rtol=1e-12)
    np.testing.assert_allclose(sd, 0.5 * np.sqrt(h), rtol=1e-12)
