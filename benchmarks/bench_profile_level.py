"""What the profile's slow level trades (``ScoringConfig.profile_level_tau_s``): day-ahead error
on processes whose right answer is known, for time constants of one, two and four days.

A daily schedule (running 08:00–18:00 at 10, idle at 2, noise 0.3; 5-minute readings, 14 days,
6 seeds) with, in turn:

* nothing else;
* a passing excursion: a smooth six-hour bump of 3 every other day (what the simulator's
  incidents are: they all end), forecasts issued as each one ends;
* a lasting shift of 3 on day 7 (a recalibrated or moved sensor), forecasts every half day
  after it, reported by day since the shift;
* a trend of 0.3 a day (one noise sd).

A slow level carries less of a passing excursion into tomorrow and follows a lasting change
later; the tuning series (``bench_forecast.py --tune``) have excursions but no lasting change,
which is why this is measured beside them. Prints a table; asserts nothing.

Usage: ``.venv/bin/python benchmarks/bench_profile_level.py`` (a few seconds).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.registry import LoadedModel, load_active  # noqa: E402
from core.scoring import FEATURE_NAMES, Scorer, ScoringConfig  # noqa: E402

STEP_S = 300.0
PER_DAY = int(86400 / STEP_S)
DAYS = 14
T0 = 1767225600.0  # 2026-01-01T00:00:00Z
TAUS_DAYS = (1.0, 2.0, 4.0)
SHIFT_DAY = 7


def schedule(rng: np.random.Generator) -> np.ndarray:
    hour = (np.arange(DAYS * PER_DAY) * STEP_S % 86400.0) / 3600.0
    return np.where((hour >= 8) & (hour < 18), 10.0, 2.0) + rng.normal(0, 0.3, hour.shape)


def excursions(x: np.ndarray, rng: np.random.Generator) -> list[int]:
    """Add a six-hour bump every other day; the origins are their ends."""
    length, ends = int(6 * 3600 / STEP_S), []
    for day in range(4, DAYS - 1, 2):
        start = day * PER_DAY + int(rng.integers(0, PER_DAY - length))
        x[start : start + length] += 3.0 * np.sin(np.pi * np.arange(length) / length) ** 2
        ends.append(start + length)
    return ends


def shift(x: np.ndarray, rng: np.random.Generator) -> list[int]:
    start = SHIFT_DAY * PER_DAY + int(rng.integers(0, PER_DAY))
    x[start:] += 3.0
    return list(range(start, x.shape[0] - PER_DAY, PER_DAY // 2))


def trend(x: np.ndarray, rng: np.random.Generator) -> list[int]:
    x += 0.3 * np.arange(x.shape[0]) / PER_DAY
    return list(range(7 * PER_DAY, x.shape[0] - PER_DAY, PER_DAY // 2))


def nothing(x: np.ndarray, rng: np.random.Generator) -> list[int]:
    return list(range(7 * PER_DAY, x.shape[0] - PER_DAY, PER_DAY // 2))


@functools.cache
def committed_models() -> tuple[LoadedModel, LoadedModel]:
    return (
        load_active(ROOT / "models", "anomaly_detector", list(FEATURE_NAMES)),
        load_active(ROOT / "models", "forecaster"),
    )


def day_ahead_errors(
    tau_days: float, change: Callable[[np.ndarray, np.random.Generator], list[int]]
) -> list[tuple[int, float]]:
    """(readings since the first origin, day-ahead MAE) at every origin of every seed, the
    forecasts served as ``/predict`` gives them."""
    detector, forecaster = committed_models()
    config = ScoringConfig(profile_level_tau_s=tau_days * 86400.0)
    out = []
    for seed in range(6):
        rng = np.random.default_rng(700 + seed)
        x = schedule(rng)
        origins = change(x, rng)
        scorer = Scorer(config, detector, forecaster)
        done = 0
        for origin in origins:
            t = T0 + STEP_S * np.arange(done, origin, dtype=np.float64)
            for _ in scorer.score_arrays(["s"] * (origin - done), t, x[done:origin]):
                pass
            done = origin
            mean = np.array([p.mean for p in scorer.forecast("s", PER_DAY)])
            error = float(np.mean(np.abs(x[origin : origin + PER_DAY] - mean)))
            out.append((origin - origins[0], error))
    return out


def row(label: str, cells: list[float]) -> None:
    print(f"| {label} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


def main() -> int:
    taus = " | ".join(f"τ = {t:g} d" for t in TAUS_DAYS)
    print(f"| process (day-ahead MAE; noise sd 0.3) | {taus} |")
    print("|---|" + "---:|" * len(TAUS_DAYS))
    for label, change in (
        ("schedule alone", nothing),
        ("passing excursions", excursions),
        ("trend of one noise sd a day", trend),
    ):
        row(label, [float(np.mean([e for _, e in day_ahead_errors(t, change)])) for t in TAUS_DAYS])
    runs = {t: day_ahead_errors(t, shift) for t in TAUS_DAYS}
    for day in range(5):
        cells = [float(np.mean([e for s, e in runs[t] if s // PER_DAY == day])) for t in TAUS_DAYS]
        row(f"lasting shift, day {day + 1} after", cells)
    return 0


if __name__ == "__main__":
    sys.exit(main())
