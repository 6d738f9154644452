"""The long-run forecaster (kernel section "seasonal profile") and how a forecast blends it in.

Judged on processes whose right answer is known: a machine on a daily schedule (a shape a few
Fourier terms do not draw), noise around a fixed level (no daily shape at all), a level that
wanders and returns to its mean under measurement noise, and readings sparser than the
profile's bins.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.scoring import Scorer, ScoringConfig
from core.scoring import kernel as k
from core.scoring.forecaster import LongRun, blend_long_run, profile_path, reversion
from tests.unit.test_scoring_support import START, forecast_coverage, models

DAY_S = 86400.0
STEP_S = 300.0
PER_DAY = int(DAY_S / STEP_S)


def _schedule(days: int, seed: int) -> np.ndarray:
    """Running 08:00-18:00 at 10 units, idle at 2, Gaussian noise 0.3: a square wave by day."""
    rng = np.random.default_rng(seed)
    hour = (np.arange(days * PER_DAY) * STEP_S % DAY_S) / 3600.0
    return np.where((hour >= 8) & (hour < 18), 10.0, 2.0) + rng.normal(0, 0.3, hour.shape)


def _scorer() -> Scorer:
    detector, forecaster = models()
    return Scorer(ScoringConfig(), detector, forecaster)


def _feed(scorer: Scorer, sid: str, x: np.ndarray, upto: int, done: int = 0) -> None:
    t = START.timestamp() + STEP_S * np.arange(done, upto, dtype=np.float64)
    for _ in scorer.score_arrays([sid] * (upto - done), t, x[done:upto]):
        pass


def test_a_daily_schedule_is_forecast_a_day_ahead() -> None:
    x = _schedule(9, seed=3)
    scorer = _scorer()
    served: list[float] = []
    ar_only: list[float] = []
    naive: list[float] = []
    done = 0
    for origin in range(6 * PER_DAY, 8 * PER_DAY, PER_DAY // 4):  # 8 origins over two days
        _feed(scorer, "m", x, origin, done)
        done = origin
        actual = x[origin : origin + PER_DAY]
        for out, long_run in ((served, True), (ar_only, False)):
            mean = np.array([p.mean for p in scorer.forecast("m", PER_DAY, long_run)])
            out.append(float(np.mean(np.abs(actual - mean))))
        naive.append(float(np.mean(np.abs(actual - x[origin - PER_DAY : origin]))))
    st = scorer.engine.state[scorer.engine.slots["m"]]
    assert st[k.MSE_S] < st[k.MSE_F], "the schedule must pick the seasonal profile"
    # The noise alone gives an MAE of 0.24; the schedule's edges cost a little more.
    assert np.mean(served) < 0.5, f"served MAE {np.mean(served):.2f}"
    assert np.mean(served) < 0.5 * np.mean(ar_only), (served, ar_only)
    assert np.mean(served) < np.mean(naive), (served, naive)


def test_a_series_without_daily_shape_uses_the_flat_level() -> None:
    rng = np.random.default_rng(4)
    e = rng.normal(0, 1.0, 6 * PER_DAY)
    x = np.empty_like(e)
    x[0] = 0.0
    for i in range(1, len(e)):
        x[i] = 0.9 * x[i - 1] + e[i]
    scorer = _scorer()
    _feed(scorer, "noise", 50.0 + x, len(x))
    st = scorer.engine.state[scorer.engine.slots["noise"]]
    # A profile learned from noise only adds the noise of its bins to the forecast.
    assert st[k.MSE_F] < st[k.MSE_S]
    # rho is the deviations' lag-1 autocorrelation: the process's 0.9.
    assert 0.8 < st[k.PR_C1] / st[k.PR_C0] < 0.95
    mean = np.array([p.mean for p in scorer.forecast("noise", PER_DAY)])
    assert abs(mean[-1] - 50.0) < 1.5, "a day ahead the forecast is the level"


def test_a_wandering_level_is_forecast_back_to_its_mean() -> None:
    """Levels that wander and return to their mean over about a day (an AR(1) at
    exp(-1/288) per 5-minute reading: barometric pressure, a controlled room), read through
    noise. The noise hides how slowly a level returns from the deviations' lag-1
    autocorrelation, not from the ratio of their lag-2 and lag-1 autocovariances. Without a
    daily shape the forecast returns from the AR path to the long mean at that rate, and over
    eight such sensors it beats handing the AR path over to the flat slow level (what it did
    before): on any one sensor three days of data leave the mean and the rate rough."""
    phi, days = float(np.exp(-1.0 / PER_DAY)), 12
    served, before, rhos, rates = [], [], [], []
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        level = np.empty(days * PER_DAY)
        level[0] = 0.0
        for i in range(1, level.shape[0]):
            level[i] = phi * level[i - 1] + rng.normal(0.0, 0.25)
        x = 1013.0 + level + rng.normal(0.0, 1.0, level.shape)
        scorer = _scorer()
        done = 0
        for origin in range(8 * PER_DAY, 11 * PER_DAY, PER_DAY // 2):  # 6 origins, 3 days
            _feed(scorer, "p", x, origin, done)
            done = origin
            st = scorer.engine.state[scorer.engine.slots["p"]]
            # Without a daily shape the profile's and the flat level's day-ahead errors are a
            # coin's toss apart (the profile learns bits of the wander); that choice is tested
            # above. This test is about the flat alternative's path, so it is chosen here.
            kept, st[k.MSE_S] = st[k.MSE_S], np.inf
            pts = scorer.forecast("p", PER_DAY)
            st[k.MSE_S] = kept
            ar_pts = scorer.forecast("p", PER_DAY, long_run=False)
            mean, ar = (np.array([p.mean for p in path]) for path in (pts, ar_pts))
            rho = st[k.PR_C1] / st[k.PR_C0]
            flat = LongRun(np.full(PER_DAY, st[k.FL]), 1.0, 1.0, rho)
            old = blend_long_run(ar, np.ones(PER_DAY), np.ones(PER_DAY), flat)[0]
            actual = x[origin : origin + PER_DAY]
            served.append(float(np.mean(np.abs(actual - mean))))
            before.append(float(np.mean(np.abs(actual - old))))
        rhos.append(rho)
        rates.append(reversion(st[k.RV_C1], st[k.RV_C2]))
    assert np.median(rhos) < 0.9, rhos  # what the noise does to the lag-1 autocorrelation
    assert 0.99 < np.median(rates) <= 0.999, rates  # the level's own 0.9965
    assert np.mean(served) < 0.97 * np.mean(before), (np.mean(served), np.mean(before))
    # The forecast starts at the AR path's first step, with its one-step band, and moves
    # towards the long mean while its band widens towards the level's own spread.
    assert mean[0] == pytest.approx(ar[0])
    half = [p.upper_80 - p.mean for p in pts]
    assert half[0] == pytest.approx(ar_pts[0].upper_80 - ar_pts[0].mean)
    assert abs(mean[-1] - st[k.RL]) < abs(mean[0] - st[k.RL]) + 1e-9
    assert half[-1] > 1.5 * half[0], (half[0], half[-1])


def test_long_run_intervals_cover_nominally_on_the_sensors_own_errors() -> None:
    # Each sensor's own day-ahead errors set its long-run interval: two sensors with the same
    # schedule but noise 0.3 and 1.5 get bands five times apart, and both cover.
    days = 10
    base = _schedule(days, seed=5)
    rng = np.random.default_rng(6)
    x = np.vstack([base, base + rng.normal(0, np.sqrt(1.5**2 - 0.3**2), base.shape)])
    scorer = _scorer()
    origins = range(4 * PER_DAY, (days - 1) * PER_DAY, 7)
    cov = forecast_coverage(scorer, x, origins, (1, 24, 144, 287), STEP_S, START.timestamp())
    for h, (c80, c95) in cov.items():
        assert abs(c80 - 80.0) <= 6.0 and abs(c95 - 95.0) <= 4.0, f"h={h}: {cov}"
    q = [scorer.engine.state[scorer.engine.slots[s], k.Q80_S] for s in ("s0", "s1")]
    assert 3.0 < q[1] / q[0] < 7.0, q


def test_sparse_readings_borrow_the_nearest_visited_bin() -> None:
    offsets = np.zeros(96)
    weights = np.zeros(96)
    offsets[[0, 4, 8]] = [1.0, 2.0, 3.0]
    weights[[0, 4, 8]] = 1.0
    times = np.array([0.0, 900.0, 3 * 900.0, 6 * 900.0, 7 * 900.0, 95 * 900.0])
    got = profile_path(offsets, weights, 10.0, times, DAY_S)
    # bins 0, 1 -> 0; 3 -> 4; 6 -> 4 or 8 (tie: the first visited); 7 -> 8; 95 -> 0 (wraps)
    np.testing.assert_allclose(got, [11.0, 11.0, 12.0, 12.0, 13.0, 11.0])
    assert np.all(profile_path(offsets, np.zeros(96), 5.0, times, DAY_S) == 5.0)


def test_the_blend_hands_over_from_the_ar_path_by_rho() -> None:
    ar = np.full(50, 7.0)
    long_run = LongRun(np.full(50, 3.0), half80=2.0, half95=3.0, rho=0.8)
    mean, h80, h95 = blend_long_run(ar, np.full(50, 0.5), np.full(50, 0.8), long_run)
    w = 0.8 ** np.arange(1, 51)
    np.testing.assert_allclose(mean, 3.0 + 4.0 * w)
    assert h80[0] < h80[-1] and abs(h80[-1] - 2.0) < 1e-3 and abs(h95[-1] - 3.0) < 1e-3
    still = blend_long_run(ar, np.full(50, 0.5), np.full(50, 0.8), LongRun(ar, 2.0, 3.0, 0.0))
    np.testing.assert_allclose(still[1], 2.0 * np.sqrt(1.0 - 0.0))


def test_forecasts_wait_until_the_sensor_has_measured_its_errors() -> None:
    x = _schedule(2, seed=7)
    scorer = Scorer(ScoringConfig(), *models())
    _feed(scorer, "new", x, PER_DAY)  # one day: no bin has been revisited yet
    assert scorer.engine.state[scorer.engine.slots["new"], k.PE_N] == 0
    served = [p.mean for p in scorer.forecast("new", 12)]
    assert served == [p.mean for p in scorer.forecast("new", 12, long_run=False)]
    _feed(scorer, "new", x, PER_DAY + 30, PER_DAY)
    # One error per visit of a 15-minute bin: 30 readings at 5 minutes visit 10.
    assert scorer.engine.state[scorer.engine.slots["new"], k.PE_N] == 10
    assert served != [p.mean for p in scorer.forecast("new", 12)]


@pytest.mark.parametrize(
    "bad",
    [
        {"profile_bins": 0},
        {"profile_weight": 0.0},
        {"profile_quantile_step": -1.0},
        {"profile_clip": -1.0},
        {"profile_mean_tau_s": 0.0},
    ],
)
def test_invalid_profile_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="profile"):
        ScoringConfig(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("clip", [0.0, 1.5])
def test_one_visit_moves_a_bin_by_at_most_the_clip(clip: float) -> None:
    """A reading the detector let through far from its bin (a maintenance drop it came to
    accept, an outage's ramp): unclipped, the bin moves by its weight times the whole error;
    clipped, by at most ``profile_clip`` half-widths times its weight, once the bin is past
    its first visits."""
    detector, forecaster = models()
    eng = Scorer(ScoringConfig(profile_clip=clip), detector, forecaster).engine
    st = np.zeros(k.N_COLS)
    prof = np.zeros((eng.cfg.profile_bins, k.PF_COLS))
    st[k.N] = st[k.PE_N] = 1000.0  # long measured: the clip applies
    st[k.LOG_DT], st[k.DT_N] = np.log(900.0), 1000.0  # one reading per 15-minute bin
    st[k.PL], st[k.FL], st[k.Q80_S] = 10.0, 10.0, 1.0
    prof[:, k.PF_W] = 50.0
    t = 3 * DAY_S + 12 * 3600.0  # noon: bin 48
    k._profile_learn(st, prof, t, 0.0, 900.0, True, eng._fp)
    moved = -prof[48, k.PF_S]
    weight = eng.cfg.profile_weight
    # The level steps first (a little), then the bin takes its share of what is left: the
    # reading is 0, so the error is the level itself.
    error = st[k.PL]
    assert 9.5 < error < 10.0
    assert moved == pytest.approx(weight * (min(clip * st[k.Q80_S], error) if clip else error))
    # A bin on its second visit is still finding its level: a running mean, never clipped.
    prof[49, k.PF_W] = 1.0
    k._profile_learn(st, prof, t + 900.0, 0.0, 900.0, True, eng._fp)
    assert -prof[49, k.PF_S] == pytest.approx(0.5 * st[k.PL])
