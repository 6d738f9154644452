"""Where a day-ahead forecast's error comes from: MAE by horizon band, and one step ahead.

On the training-side simulated sensors of one type (``--type``, default pressure; the sensors
``bench_forecast.py --tune --tune-sim 24`` uses, seed ``TUNE_SEED``, 12 one-day origins each),
three day-ahead forecasts are compared over steps 1–4, 5–16, 17–48 and 49–96:

* what ``Scorer.forecast`` serves;
* the same with the AR path as its start (what it serves where the AR path predicts the next
  reading better than "no change"; forced here by hiding that comparison, as the unit test
  does), i.e. what it served before the start from the last reading;
* statsforecast's AutoETS, refitted at each origin on two weeks (as in ``bench_forecast.py``).

A second table gives each sensor's one-step errors over its readings after the first week:
the AR path's (the scorer's ``expected``) against "no change" (the previous reading).

Usage: ``.venv/bin/python benchmarks/bench_forecast_horizons.py [--type pres]`` (about ten
seconds). Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.registry import LoadedModel, load_active  # noqa: E402
from core.scoring import FEATURE_NAMES, Scorer, ScoringConfig  # noqa: E402
from core.scoring import kernel as k  # noqa: E402
from scripts.make_datasets import (  # noqa: E402
    ANOMALY_RATE,
    TRAIN_START,
    TRAIN_TICKS,
    TUNE_SEED,
    write_synthetic,
)
from sensorpipe.datasets import SensorSeries, load_readings  # noqa: E402
from sensorpipe.forecast_eval import Grid, origins_for, peer_forecast  # noqa: E402

BANDS = ((0, 4), (4, 16), (16, 48), (48, 96))
HORIZON = 96
WEEK = 7 * 96
Models = tuple[LoadedModel, LoadedModel]  # anomaly detector, forecaster


def served(scorer: Scorer, sid: str, ar_start: bool) -> np.ndarray:
    st = scorer.engine.state[scorer.engine.slots[sid]]
    kept = st[k.DABS_L]
    if ar_start:  # "no change" never looks better: the AR path starts, as before
        st[k.DABS_L] = np.inf
    try:
        return np.array([p.mean for p in scorer.forecast(sid, HORIZON)])
    finally:
        st[k.DABS_L] = kept


def by_horizon(s: SensorSeries, models: Models) -> dict[str, np.ndarray]:
    """Mean |error| per band over the origins, per method."""
    g = Grid.of(s)
    t = np.array([p[0].timestamp() for p in s.points])
    x = np.array([p[1] for p in s.points])
    scorer = Scorer(ScoringConfig(), *models)
    errors: dict[str, list[np.ndarray]] = {"served": [], "AR start (before)": [], "AutoETS": []}
    fed = 0
    for o in origins_for(len(g.y), 672, HORIZON, 12):
        upto = int(np.searchsorted(t, g.t0 + o * g.step_s, side="right"))
        for _ in scorer.score_arrays([s.sensor_id] * (upto - fed), t[fed:upto], x[fed:upto]):
            pass
        fed = upto
        actual = g.y[o + 1 : o + 1 + HORIZON]
        paths = {
            "served": served(scorer, s.sensor_id, ar_start=False),
            "AR start (before)": served(scorer, s.sensor_id, ar_start=True),
            "AutoETS": peer_forecast("autoets", g, o, horizon=HORIZON, season=96).mean,
        }
        for name, mean in paths.items():
            errors[name].append(np.abs(mean - actual))
    return {
        name: np.array([np.nanmean(np.array(e)[:, lo:hi]) for lo, hi in BANDS])
        for name, e in errors.items()
    }


def one_step(s: SensorSeries, models: Models) -> tuple[float, float]:
    """Median |error| one step ahead after the first week: the AR path's, and no change's."""
    t = np.array([p[0].timestamp() for p in s.points])
    x = np.array([p[1] for p in s.points])
    expected = np.full(x.shape, np.nan)
    scorer = Scorer(ScoringConfig(), *models)
    for pos, res in scorer.score_arrays([s.sensor_id] * len(x), t, x):
        expected[pos] = np.where(res.has_history, res.expected, np.nan)
    later = slice(WEEK, None)
    ar = np.abs(expected[later] - x[later])
    no_change = np.abs(np.diff(x))[WEEK - 1 :]
    return float(np.nanmedian(ar)), float(np.median(no_change))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--type", default="pres", help="sensor id part: pres, temp, hum, flow, …")
    args = ap.parse_args()
    models_dir = ROOT / "models"
    models = (
        load_active(models_dir, "anomaly_detector", list(FEATURE_NAMES)),
        load_active(models_dir, "forecaster"),
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic(Path(tmp), "tune", TUNE_SEED, 24, TRAIN_TICKS, TRAIN_START, ANOMALY_RATE)
        series = [
            s for s in load_readings(Path(tmp) / "tune.csv").values() if args.type in s.sensor_id
        ]
    print(
        f"\ntraining-side sensors of type {args.type!r} (seed {TUNE_SEED}), 12 origins each: "
        "MAE over steps\n\n| sensor, forecast | 1–4 | 5–16 | 17–48 | 49–96 |\n"
        "|---|---:|---:|---:|---:|"
    )
    steps = []
    for s in series:
        for name, mae in by_horizon(s, models).items():
            print(f"| {s.sensor_id}, {name} | " + " | ".join(f"{v:.2f}" for v in mae) + " |")
        steps.append((s.sensor_id, *one_step(s, models)))
    print("\none step ahead, readings after the first week: median |error|\n")
    print("| sensor | AR path | no change |\n|---|---:|---:|")
    for sid, ar, same in steps:
        print(f"| {sid} | {ar:.3f} | {same:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
