"""The evaluation rules behind the ML figures: event matching, grids, seasonal naive, MASE."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from sensorpipe.datasets import Label, SensorSeries
from sensorpipe.evaluation import Scored, event_tallies, reading_kinds, runs_of
from sensorpipe.forecast_eval import (
    Forecast,
    Grid,
    Pooled,
    _pool,
    origins_for,
    resampled,
    seasonal_naive,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _scored(flags: list[int]) -> Scored:
    n = len(flags)
    t = np.array([(T0 + timedelta(minutes=i)).timestamp() for i in range(n)])
    z = np.zeros(n)
    return Scored(t, z, z, np.array(flags, dtype=bool), z, z, np.zeros((n, 6)), np.zeros((n, 3)))


def _label(kind: str, a: int, b: int) -> Label:
    return Label("s", kind, T0 + timedelta(minutes=a), T0 + timedelta(minutes=b))


def test_runs_merge_when_close() -> None:
    flags = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1], dtype=bool)
    assert runs_of(flags, merge=3) == [(1, 5), (12, 12)]
    assert runs_of(flags, merge=1) == [(1, 2), (5, 5), (12, 12)]  # only adjacent ones merge


def test_event_rule_grace_false_positives_and_dropouts() -> None:
    flags = [0] * 60
    flags[12] = 1  # within [10, 10 + grace] of the spike at 10: detected, delay 2
    flags[40] = 1  # far from every incident: one false-positive run
    scored = {"s": _scored(flags)}
    labels = [_label("spike", 10, 10), _label("stuck", 20, 25), _label("dropout", 50, 52)]
    tallies = event_tallies(scored, labels, interval_s=60.0, grace=5, merge=3)
    assert (tallies["spike"].detected, tallies["spike"].delays) == (1, [2])
    assert (tallies["stuck"].incidents, tallies["stuck"].detected) == (1, 0)
    assert "dropout" not in tallies  # the deadman's job, not the value detectors'
    overall = tallies["all"]
    assert (overall.incidents, overall.detected, overall.runs, overall.true_runs) == (2, 1, 2, 1)
    assert overall.precision == pytest.approx(0.5) and overall.recall == pytest.approx(0.5)
    kinds = reading_kinds(scored, labels)["s"]
    assert kinds[10] == "spike" and kinds[22] == "stuck" and kinds[30] == ""


def _series(values: list[float], skip: frozenset[int] = frozenset()) -> SensorSeries:
    pts = [(T0 + timedelta(hours=i), v) for i, v in enumerate(values) if i not in skip]
    return SensorSeries("s", points=pts)


def test_grid_marks_gaps_and_interpolates_inputs() -> None:
    g = Grid.of(_series([1.0, 2.0, 3.0, 4.0, 5.0], skip=frozenset({2})))
    assert g.step_s == 3600.0
    assert np.isnan(g.y[2]) and g.filled[2] == pytest.approx(3.0)


def test_seasonal_naive_repeats_the_last_season_with_growing_intervals() -> None:
    season = 4
    values = [float(i % season) for i in range(12)]
    fc = seasonal_naive(Grid.of(_series(values)), origin=11, horizon=6, season=season)
    assert fc.mean.tolist() == [0.0, 1.0, 2.0, 3.0, 0.0, 1.0]
    # A perfectly periodic series has zero seasonal-difference spread: a zero-width band.
    assert np.allclose(fc.hi95, fc.mean)


def test_pooling_computes_mase_and_coverage() -> None:
    acc = Pooled()
    actual = np.array([1.0, 2.0, 3.0, 4.0])
    mean = np.array([1.0, 3.0, 3.0, 2.0])
    fc = Forecast(mean, mean - 0.5, mean + 0.5, mean - 1.5, mean + 1.5)
    _pool(acc, fc, actual, np.ones(4, dtype=bool), scale=0.5, elapsed=0.1)
    row = acc.row()
    assert row["mae"] == pytest.approx(0.75)
    assert row["mase"] == pytest.approx(1.5)
    assert row["cov80"] == pytest.approx(50.0) and row["cov95"] == pytest.approx(75.0)


def _pooled(errors: list[float], inside80: list[bool]) -> Pooled:
    """One origin per error: four points each, all off by ``error``, the 80 % interval holding
    all four or none, the 95 % one always holding them."""
    acc = Pooled()
    actual = np.zeros(4)
    for e, inside in zip(errors, inside80, strict=True):
        mean = np.full(4, e)
        w80 = 2.0 * e + 1.0 if inside else 0.5 * e
        fc = Forecast(mean, mean - w80, mean + w80, mean - 3 * e - 1, mean + 3 * e + 1)
        _pool(acc, fc, actual, np.ones(4, dtype=bool), scale=1.0, elapsed=0.0)
    return acc


def test_resampled_intervals_follow_the_origins() -> None:
    ours = _pooled([1.0, 1.0, 1.0, 1.0], [True, True, False, True])
    half = _pooled([2.0, 2.0, 2.0, 2.0], [True] * 4)
    firm = resampled([(ours, half, ours)])
    # The same ratio at every origin: no spread, whatever is drawn.
    assert firm["vs_naive"] == pytest.approx((0.5, 0.5))
    assert firm["vs_peer"] == pytest.approx((1.0, 1.0))
    assert firm["cov95"] == pytest.approx((100.0, 100.0))
    lo, hi = firm["cov80"]  # three origins of four covered: the draws straddle 75 %
    assert 25.0 <= lo < 75.0 < hi <= 100.0
    # One bad origin of four widens the ratio's interval on its side only.
    wild = resampled([(_pooled([1.0, 1.0, 1.0, 9.0], [True] * 4), half, half)])
    assert wild["vs_naive"][0] == pytest.approx(0.5) and wild["vs_naive"][1] > 1.5


def test_resampled_over_several_series_averages_ratios_and_pools_points() -> None:
    covered = _pooled([1.0, 1.0, 1.0, 1.0], [True] * 4)
    missed = _pooled([3.0, 3.0, 3.0, 3.0], [False] * 4)
    naive = _pooled([2.0, 2.0, 2.0, 2.0], [True] * 4)
    both = resampled([(covered, naive, naive), (missed, naive, naive)])
    # Ratios 0.5 and 1.5 average to 1.0; half of all points covered, whatever is drawn.
    assert both["vs_naive"] == pytest.approx((1.0, 1.0))
    assert both["cov80"] == pytest.approx((50.0, 50.0))
    # One series gives that series' own figure.
    assert resampled([(covered, naive, naive)])["vs_peer"] == pytest.approx((0.5, 0.5))


def test_origins_are_spread_and_leave_room_for_the_horizon() -> None:
    assert origins_for(100, 10, 20, 3) == [10, 44, 79]
    assert origins_for(20, 10, 20, 3) == []
