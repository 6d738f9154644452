"""Properties of the Scorer over arbitrary inputs: bounded outputs, split invariance."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.scoring import Scorer, ScoringConfig
from tests.unit.test_scoring_support import START, models, readings

values = st.lists(
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=160,
)


def fresh() -> Scorer:
    return Scorer(ScoringConfig(warmup_readings=20, hst_window=16), *models())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(xs=values, gaps=st.lists(st.floats(0.0, 1e5), min_size=1, max_size=160))
def test_any_finite_input_gives_bounded_finite_scores(xs: list[float], gaps: list[float]) -> None:
    t = START.timestamp() + np.cumsum(np.resize(np.asarray(gaps), len(xs)))
    out = fresh().score_batch(readings("p", t, np.asarray(xs)))
    assert len(out) == len(xs)
    for s in out:
        assert 0.0 <= s.score <= 1.0 and math.isfinite(s.score)
        assert all(0.0 <= v <= 1.0 for v in s.detectors.values())
        assert s.is_anomaly == (s.warm and s.score >= s.threshold)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    xs=st.lists(st.floats(-100, 100), min_size=40, max_size=120),
    cuts=st.lists(st.integers(1, 119), max_size=6),
    seed=st.integers(0, 3),
)
def test_any_batch_split_gives_the_same_scores(xs: list[float], cuts: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = START.timestamp() + 60.0 * np.arange(len(xs))
    x = np.asarray(xs) + rng.normal(size=len(xs))
    rs = readings("p", t, x)
    whole = [s.score for s in fresh().score_batch(rs)]
    sc = fresh()
    bounds = sorted({0, len(rs), *[c for c in cuts if c < len(rs)]})
    parts = [s.score for a, b in pairwise(bounds) for s in sc.score_batch(rs[a:b])]
    np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-12)
