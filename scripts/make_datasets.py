"""Regenerate every file under ``datasets/`` (deterministic: same code, same bytes).

* ``datasets/synthetic/train.csv`` + ``train_labels.csv`` — the simulator, seed ``TRAIN_SEED``;
* ``datasets/synthetic/eval.csv`` + ``eval_labels.csv`` — the simulator, seed ``EVAL_SEED`` (never
  used for training or tuning; the anomaly and forecast evaluations read it);
* ``datasets/synthetic/forecast_long.csv`` + ``forecast_long_labels.csv`` — the simulator, seed
  ``LONG_SEED``, twice as many days as ``eval.csv`` (never used for training or tuning; the
  forecast evaluation over many origins per series reads it);
* ``datasets/real/waterflow.csv`` — river's ``WaterFlow`` readings (BSD-3-Clause), re-labelled
  with our column names and UTC timestamps.

Usage: ``.venv/bin/python scripts/make_datasets.py [--out datasets]``; prints row counts, which
``datasets/README.md`` quotes.
"""

from __future__ import annotations

import argparse
import csv
from datetime import UTC, datetime
from pathlib import Path

from sensorpipe.commands import simulate
from simulators.csvfiles import READING_COLUMNS
from simulators.csvfiles import format_time as _iso

# Seeds: the evaluation seed is never used for training or tuning (datasets/README.md).
TRAIN_SEED = 20261101
EVAL_SEED = 20261202
N_SENSORS = 6  # one of each simulated type: temperature, humidity, pressure, vibration, power, flow
# Two of each type in the evaluation set: more incidents per kind for per-kind precision/recall.
EVAL_SENSORS = 12
INTERVAL_S = 900.0  # 15 minutes: 96 readings a day, so the daily cycle is visible to a forecaster
TRAIN_TICKS = 4032  # 42 days
EVAL_TICKS = 2016  # 21 days
# Forecast verdicts per series need many held-out days (a day's errors move together): 42 days
# of 12 sensors give about 35 one-day origins per series after a week's warm-up.
LONG_SEED = 20261303
LONG_TICKS = 4032  # 42 days
# Training-side only, and not written here: ``benchmarks/bench_forecast.py --tune --tune-sim N``
# simulates N sensors with train.csv's settings and this seed to choose long-run settings on
# more series than train.csv has. Like TRAIN_SEED, never evaluated on.
TUNE_SEED = 20261404
ANOMALY_RATE = 0.004  # about one incident per 250 readings of a sensor
TRAIN_START = datetime(2026, 1, 5, tzinfo=UTC)
EVAL_START = datetime(2026, 3, 2, tzinfo=UTC)
LONG_START = datetime(2026, 5, 4, tzinfo=UTC)


def write_synthetic(
    out: Path,
    name: str,
    seed: int,
    sensors: int,
    ticks: int,
    start: datetime,
    anomaly_rate: float = ANOMALY_RATE,
) -> None:
    """Exactly what a user gets from ``sensorpipe simulate --out … --labels …``."""
    argv = [
        "--sensors",
        str(sensors),
        "--count",
        str(ticks),
        "--rate",
        repr(1.0 / INTERVAL_S),
        "--start",
        _iso(start),
        "--seed",
        str(seed),
        "--anomaly-rate",
        str(anomaly_rate),
        "--out",
        str(out / f"{name}.csv"),
        "--labels",
        str(out / f"{name}_labels.csv"),
    ]
    # The command module itself (not the whole CLI parser): the same code path as the CLI.
    parser = argparse.ArgumentParser(prog="sensorpipe simulate")
    simulate.configure(parser)
    if simulate.run(parser.parse_args(argv)) != 0:
        raise SystemExit(f"sensorpipe simulate {' '.join(argv)} failed")


def write_waterflow(out: Path) -> int:
    from river import datasets

    rows = 0
    with (out / "waterflow.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        # The simulator's columns, so every reader takes both sets; no labels here, so
        # ``is_anomaly`` and ``anomaly_kind`` are left empty (unknown), not 0 (normal).
        w.writerow(READING_COLUMNS)
        for x, y in datasets.WaterFlow():
            w.writerow(
                [_iso(x["Time"]), "waterflow.pipeline", repr(float(y)), "flow", "l/s", "", ""]
            )
            rows += 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("datasets"))
    args = parser.parse_args()
    synthetic = args.out / "synthetic"
    real = args.out / "real"
    synthetic.mkdir(parents=True, exist_ok=True)
    real.mkdir(parents=True, exist_ok=True)
    for name, seed, sensors, ticks, start in (
        ("train", TRAIN_SEED, N_SENSORS, TRAIN_TICKS, TRAIN_START),
        ("eval", EVAL_SEED, EVAL_SENSORS, EVAL_TICKS, EVAL_START),
        ("forecast_long", LONG_SEED, EVAL_SENSORS, LONG_TICKS, LONG_START),
    ):
        write_synthetic(synthetic, name, seed, sensors, ticks, start)
    print(f"real/waterflow.csv: {write_waterflow(real)} readings")


if __name__ == "__main__":
    main()
