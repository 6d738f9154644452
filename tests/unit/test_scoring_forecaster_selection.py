"""Order selection by rolling-origin backtests on training data, and interval calibration.

``select_forecaster`` lets AIC pick p within each (d, harmonics) family, then chooses between
families by the multi-step error of the streaming scorer on the training series, and scales the
intervals per horizon so they cover the backtest errors. These tests check each step on
simulated processes whose right answer is known, always judging on freshly simulated data.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from core.registry import LoadedModel
from core.scoring import ForecasterSpec, Scorer, ScoringConfig
from core.scoring.forecaster import as_spec, forecast_path, interval_scales
from core.scoring.training import select_forecaster
from tests.unit.test_scoring_support import forecast_coverage

START = datetime(2026, 1, 1, tzinfo=UTC)
STEP_S = 300.0
HORIZONS = (1, 12, 48)


def _series(x: np.ndarray) -> list[tuple[datetime, float]]:
    return [(START + timedelta(seconds=STEP_S * i), float(v)) for i, v in enumerate(x)]


def _ar1_heavy_tails(n_series: int, n: int, seed: int) -> np.ndarray:
    """AR(1), phi 0.7, with contaminated noise: sd 1, but sd 5 one reading in ten. The scorer's
    sigma (a mean absolute residual) and Gaussian z-values then misjudge both tails."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n_series, n + 100)) * np.where(rng.random((n_series, n + 100)) < 0.1, 5, 1)
    x = np.zeros_like(e)
    for i in range(1, x.shape[1]):
        x[:, i] = 0.7 * x[:, i - 1] + e[:, i]
    return 20.0 + x[:, 100:]


def _coverage(
    spec: ForecasterSpec, x: np.ndarray, every: int, long_run: bool = False
) -> dict[int, tuple[float, float]]:
    """Held-out coverage of ``Scorer.forecast`` at HORIZONS, from origins every ``every`` steps:
    by default of the AR path alone, the part the trainer calibrates."""
    scorer = Scorer(ScoringConfig(), None, LoadedModel("forecaster", 1, spec, {}))
    origins = range(400, x.shape[1] - max(HORIZONS), every)
    return forecast_coverage(scorer, x, origins, HORIZONS, STEP_S, START.timestamp(), long_run)


@pytest.fixture(scope="module")
def heavy_tailed_fit() -> tuple[ForecasterSpec, dict[str, object]]:
    train = _ar1_heavy_tails(6, 2500, seed=11)
    return select_forecaster([_series(row) for row in train], ScoringConfig())


def test_calibration_from_training_backtests_gives_nominal_held_out_coverage(
    heavy_tailed_fit: tuple[ForecasterSpec, dict[str, object]],
) -> None:
    spec, info = heavy_tailed_fit
    assert info["family_criterion"] == "rolling_origin_mase"
    assert len(spec.interval_scale80) == info["horizon_steps"] == 288
    held_out = _ar1_heavy_tails(40, 1300, seed=12)
    calibrated = _coverage(spec, held_out, every=60)
    textbook = _coverage(replace(spec, interval_scale80=(), interval_scale95=()), held_out, 60)
    # 40 sensors x 15 origins: the Monte-Carlo sd of an 80 % coverage is ~1.6 points, of a
    # 95 % one ~0.9 (successive origins of one sensor are nearly independent 60 steps apart).
    for h, (c80, c95) in calibrated.items():
        assert abs(c80 - 80.0) <= 5.0, f"h={h}: 80 % interval covers {c80:.1f} % ({calibrated})"
        assert abs(c95 - 95.0) <= 3.0, f"h={h}: 95 % interval covers {c95:.1f} % ({calibrated})"
    # The process is built so that the uncalibrated Gaussian interval is visibly off: without
    # this the test above could pass with a calibration that does nothing.
    worst = max(abs(c80 - 80.0) + abs(c95 - 95.0) for c80, c95 in textbook.values())
    assert worst > 6.0, f"textbook intervals already nominal: {textbook}"


def test_served_forecast_keeps_nominal_coverage_with_the_long_run_blended_in(
    heavy_tailed_fit: tuple[ForecasterSpec, dict[str, object]],
) -> None:
    # What /predict serves: the calibrated AR path handed over to each sensor's long-run
    # forecast, whose half-widths are quantiles of its own errors a period ahead.
    spec, _ = heavy_tailed_fit
    served = _coverage(spec, _ar1_heavy_tails(40, 1300, seed=12), every=60, long_run=True)
    for h, (c80, c95) in served.items():
        assert abs(c80 - 80.0) <= 5.0 and abs(c95 - 95.0) <= 3.0, f"h={h}: {served}"


def test_order_within_a_family_is_still_chosen_by_aic(
    heavy_tailed_fit: tuple[ForecasterSpec, dict[str, object]],
) -> None:
    spec, info = heavy_tailed_fit
    aic = info["aic"]
    assert isinstance(aic, dict)
    same_family = {k: v for k, v in aic.items() if k.endswith(f"_d{spec.d}_k{spec.fourier_k}")}
    assert (
        min(same_family, key=lambda k: same_family[k]) == f"p{spec.p}_d{spec.d}_k{spec.fourier_k}"
    )
    assert info["criterion"] == "aic"


def _integrated(phi: float, n_series: int, n: int, seed: int) -> np.ndarray:
    """Random walks whose steps are AR(1) with coefficient ``phi`` (ARIMA(1, 1, 0))."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n_series, n + 100))
    dx = np.zeros_like(e)
    for i in range(1, dx.shape[1]):
        dx[:, i] = phi * dx[:, i - 1] + e[:, i]
    return 100.0 + np.cumsum(dx[:, 100:], axis=1)


def test_backtest_selects_differencing_for_a_random_walk_with_momentum() -> None:
    # An AR model of the levels cannot carry momentum (its coefficients are kept stationary), so
    # a day ahead it lags behind; the multi-step backtest must see that, whatever AIC says.
    walks = _integrated(0.6, 4, 2500, seed=5)
    spec, info = select_forecaster([_series(w) for w in walks], ScoringConfig())
    assert info["family_criterion"] == "rolling_origin_mase"
    assert spec.d == 1 and spec.fourier_k == 0, info["backtest"]


def test_a_plain_random_walk_gets_a_persistence_forecaster_without_a_cycle() -> None:
    # d = 1 and a d = 0 AR(1) with phi ~ 1 (its level following the data) forecast the same
    # way here; either is right, seasonal terms are not.
    walks = _integrated(0.0, 4, 2500, seed=7)
    spec, info = select_forecaster([_series(w) for w in walks], ScoringConfig())
    assert spec.fourier_k == 0, info["backtest"]
    assert spec.d == 1 or spec.prior[1] > 0.9, info["backtest"]


def test_short_training_data_falls_back_to_aic_without_calibration() -> None:
    rng = np.random.default_rng(6)
    spec, info = select_forecaster([_series(rng.normal(size=300))], ScoringConfig())
    assert info["family_criterion"] == "aic"
    assert spec.interval_scale80 == () and spec.interval_scale95 == ()


def test_interval_scales_hold_the_last_value_past_the_calibrated_horizon() -> None:
    spec = ForecasterSpec(p=1, interval_scale80=(1.0, 1.5), interval_scale95=(1.2, 2.0))
    m80, m95 = interval_scales(spec, 4)
    assert m80.tolist() == [1.0, 1.5, 1.5, 1.5] and m95.tolist() == [1.2, 2.0, 2.0, 2.0]
    ones80, ones95 = interval_scales(ForecasterSpec(p=1), 3)
    assert ones80.tolist() == ones95.tolist() == [1.0, 1.0, 1.0]


def test_spec_validates_and_round_trips_interval_scales() -> None:
    with pytest.raises(ValueError, match="same length"):
        ForecasterSpec(p=1, interval_scale80=(1.0,), interval_scale95=())
    with pytest.raises(ValueError, match="finite"):
        ForecasterSpec(p=1, interval_scale80=(float("nan"),), interval_scale95=(1.0,))
    doc = {"p": 1, "interval_scale80": [1, 2], "interval_scale95": [2, 3]}
    assert as_spec(doc) == ForecasterSpec(
        p=1, interval_scale80=(1.0, 2.0), interval_scale95=(2.0, 3.0)
    )


def test_moving_level_path_matches_the_engine_rule_and_its_psi_weights() -> None:
    """d = 0 with the EWMA level moving: the mean follows the recursion the engine applies, and
    the sd is that of the recursion's impulse response (no longer decaying to 0: the level
    absorbs part of every shock, a unit root)."""
    spec = ForecasterSpec(p=1, d=0)
    theta = np.array([0.1, 0.6])
    lags = np.array([12.0, 11.0])
    level, scale, alpha = 10.0, 2.0, 0.05
    times = np.arange(1, 401, dtype=np.float64) * 60.0
    mean, sd = forecast_path(spec, theta, lags, level, scale, 1.0, times, level_alpha=alpha)
    x_prev, lev = lags[0], level
    for h in range(5):
        pred_u = theta[0] + theta[1] * (x_prev - lev) / scale
        x_prev = lev + scale * pred_u
        lev += alpha * (x_prev - lev)
        assert mean[h] == pytest.approx(x_prev)
    # psi: 1, then phi + alpha (1 - phi), ... -> a constant, so the variance keeps growing.
    assert sd[0] == pytest.approx(1.0)
    assert sd[1] ** 2 - sd[0] ** 2 == pytest.approx((0.6 + 0.05 * 0.4) ** 2)
    assert np.sqrt(sd[-1] ** 2 - sd[-2] ** 2) > 0.05  # a plain AR(1) psi would be 0.6**399
    frozen, frozen_sd = forecast_path(spec, theta, lags, level, scale, 1.0, times)
    assert frozen_sd[-1] < sd[-1]
    assert frozen[-1] == pytest.approx(level + scale * 0.1 / 0.4, rel=1e-6)
