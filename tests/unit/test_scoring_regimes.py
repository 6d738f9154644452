"""Regime memory: sensors with discrete operating levels (a load switching between set points, a
machine that runs by day and idles by night) must not alert on every return to a level they have
operated at, while a value between the levels, or a new level, still alerts."""

from __future__ import annotations

import numpy as np

from core.scoring import Scorer, ScoringConfig
from tests.unit.test_scoring_support import START, models, readings

DAY = 1440  # readings per day at 60 s


def scorer(**overrides: object) -> Scorer:
    return Scorer(ScoringConfig(**overrides), *models())  # type: ignore[arg-type]


def flags(sc: Scorer, sid: str, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.array([s.is_anomaly for s in sc.score_batch(readings(sid, t, x))])


def multilevel_load(n: int, seed: int, levels: tuple[float, ...]) -> np.ndarray:
    """A load that holds one of ``levels`` for ~10 readings at a time, with 30 W of ripple."""
    rng = np.random.default_rng(seed)
    x = np.empty(n)
    i = 0
    while i < n:
        hold = 1 + int(rng.exponential(10.0))
        x[i : i + hold] = rng.choice(levels)
        i += hold
    return x + rng.normal(0.0, 30.0, n)


def test_switching_between_known_levels_is_quiet_and_a_value_between_them_alerts() -> None:
    levels = (600.0, 1600.0, 2800.0, 4000.0)
    x = multilevel_load(3000, seed=1, levels=levels)
    t = START.timestamp() + 60.0 * np.arange(x.size)
    spikes = [1500, 2200, 2700]
    for i in spikes:
        x[i] = x[i - 1] + 500.0  # half way to the next level, or above the top one
        x[i + 1] = x[i - 1]
    f = flags(scorer(), "load", t, x)
    assert all(f[i] for i in spikes)
    normal = np.ones(x.size, dtype=bool)
    for i in spikes:
        normal[i : i + 3] = False
    # ~250 level switches after the warm-up; without regime memory most of them alerted.
    assert f[400:][normal[400:]].sum() <= 3


def machine_vibration(days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """RMS vibration of a machine running 06:00-22:00 (level 1.4) and idling at night (0.05),
    log-normal noise of 8 %; one reading a minute from midnight."""
    rng = np.random.default_rng(seed)
    n = days * DAY
    minute = np.arange(n) % DAY
    running = (minute >= 6 * 60) & (minute < 22 * 60)
    level = np.where(running, 1.4, 0.05)
    t = START.timestamp() + 60.0 * np.arange(n)
    return t, level * np.exp(0.08 * rng.normal(size=n))


def test_daily_start_and_stop_alert_the_first_time_only() -> None:
    t, x = machine_vibration(days=3, seed=2)
    idle_spike = 2 * DAY + 120  # 02:00 on day 3
    x[idle_spike] = 0.4
    f = flags(scorer(), "vib", t, x)
    first_start = 6 * 60
    assert f[first_start : first_start + 5].any()  # never seen running: an anomaly
    later = np.ones(x.size, dtype=bool)
    later[: first_start + 60] = False
    later[idle_spike : idle_spike + 2] = False
    assert f[later].sum() == 0  # every later start and stop returns to a known level
    assert f[idle_spike]  # idle noise is its own: 0.4 is far outside it
