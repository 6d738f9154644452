"""The value mixture (kernel section "value mixture"): a load that changes set point between
most readings is judged by the values it takes, every other sensor by its forecast band."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from core.scoring import Scorer, ScoringConfig
from core.scoring import kernel as k
from tests.unit.test_scoring_support import START, ar_series, models

STEP_S = 900.0  # 15-minute readings: the load changes set point between most of them
LEVELS = np.array([600.0, 1600.0, 2800.0, 4000.0])


def _load(n: int, seed: int) -> np.ndarray:
    """A fresh set point at most readings (hold times shorter than the interval), noise 30 W."""
    rng = np.random.default_rng(seed)
    return LEVELS[rng.integers(0, len(LEVELS), n)] + rng.normal(0.0, 30.0, n)


def _stream(scorer: Scorer, sid: str, x: np.ndarray, first: int = 0) -> np.ndarray:
    """Score ``x`` as readings ``first..`` of the sensor; returns the anomaly flags."""
    t = START.timestamp() + STEP_S * np.arange(first, first + len(x), dtype=np.float64)
    ((_, res),) = scorer.score_arrays([sid] * len(x), t, x)
    return np.asarray(res.is_anomaly)


def test_a_set_point_load_is_judged_by_its_values() -> None:
    x = _load(900, seed=1)
    probe = np.array([2200.0, 2800.0 + 20.0, 3400.0, 600.0 - 10.0])  # between, at, between, at
    flagged = {}
    for margin in (ScoringConfig().mixture_margin, 1e9):  # 1e9: the forecast band alone
        scorer = Scorer(replace(ScoringConfig(), mixture_margin=margin), *models())
        _stream(scorer, "load", x)
        st = scorer.engine.state[scorer.engine.slots["load"]]
        flagged[margin] = [
            bool(_stream(scorer, "load", probe[i : i + 1], 900 + i)[0]) for i in range(4)
        ]
        if margin < 1e9:
            assert k._mix_mode(st, scorer.engine._fp), f"mixture lost: {st[k.MX_LL]:.2f} nats"
            levels = np.sort(
                scorer.engine.mixture[0][:, k.MX_MU][scorer.engine.mixture[0][:, k.MX_W] > 0.1]
            )
            np.testing.assert_allclose(levels, LEVELS, atol=60.0)
    # Halfway between set points is 20 noise sds from any of them: an anomaly by the values the
    # load takes, but well inside a forecast band that must span the jumps between set points.
    assert flagged[ScoringConfig().mixture_margin] == [True, False, True, False]
    assert flagged[1e9] == [False, False, False, False]


def test_continuous_sensors_stay_with_the_forecast() -> None:
    for seed, phi in ((2, 0.7), (3, 0.95)):
        t, x = ar_series(1500, seed, phi=phi, interval_s=60.0)
        scorer = Scorer(ScoringConfig(), *models())
        for _ in scorer.score_arrays(["s"] * len(t), t, x):
            pass
        st = scorer.engine.state[0]
        assert st[k.MX_LN] > 1000
        assert st[k.MX_LL] < 0.0, f"phi {phi}: mixture preferred by {st[k.MX_LL]:.2f} nats"


def test_a_load_sampled_often_keeps_its_forecast() -> None:
    # The same load read every minute holds each set point for several readings: regime memory
    # follows the switches and the forecast band, at one level's noise, explains it better.
    rng = np.random.default_rng(4)
    holds = rng.exponential(10.0, 400).astype(int) + 1
    x = np.repeat(LEVELS[rng.integers(0, len(LEVELS), len(holds))], holds)[:2500]
    x = x + rng.normal(0.0, 30.0, len(x))
    scorer = Scorer(ScoringConfig(), *models())
    t = START.timestamp() + 60.0 * np.arange(len(x), dtype=np.float64)
    for _ in scorer.score_arrays(["m"] * len(x), t, x):
        pass
    assert not k._mix_mode(scorer.engine.state[0], scorer.engine._fp)


def test_a_reading_judged_by_its_values_is_reported_against_the_nearest_one() -> None:
    scorer = Scorer(ScoringConfig(), *models())
    _stream(scorer, "load", _load(900, seed=5))
    t = START.timestamp() + STEP_S * 900.0
    ((_, res),) = scorer.score_arrays(["load"], np.array([t]), np.array([2500.0]))
    # The alert's expected value and band: the set point 2800 and its spread, not a forecast
    # band wide enough to hold every set point.
    assert bool(res.is_anomaly[0])
    assert abs(float(res.expected[0]) - 2800.0) < 60.0
    assert 10.0 < float(res.sigma[0]) < 250.0
