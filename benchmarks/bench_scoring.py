"""Throughput of the scoring library, beside the raw costs that bound it, measured in one run.

Figures:

* ``Scorer.score_batch`` readings/s with 1,000 warm sensors, micro-batches of 1,000 readings
  (one reading per sensor per batch, as the scorer service batches them), including building
  the ``Score`` objects; and the engine alone (arrays in, arrays out);
* the same with small batches (100 readings): the fixed cost per call shows;
* the engine alone for ONE sensor: its whole history in one call (what ``backtest`` of a single
  series does) and one reading per call (the fixed cost of a call: dispatch into the compiled
  kernel, allocating the outputs);
* ``backtest`` rows/s: CSV parse + replay + CSV write, for 100 interleaved series and for one;
* the compiled kernel's start-up: cold compile (empty numba cache) and load from the cache, each
  in a fresh interpreter (wall-clock seconds; full run only, a cold compile takes tens of seconds);
* raw costs: scikit-learn ``IsolationForest.score_samples`` for 1 row and for 1,000 rows vs the
  compiled forest; river's ``HalfSpaceTrees`` (score_one + learn_one), ``SNARIMAX``
  (learn_one + forecast) and ``ADWIN`` (update) per reading — the per-reading Python costs
  that made us compile our own instead.

All rates are per CPU-second of this process (``time.process_time``): the benchmark machine is
shared, and wall-clock figures there measure the neighbours as much as the code.

Usage::

    .venv/bin/python benchmarks/bench_scoring.py           # full
    .venv/bin/python benchmarks/bench_scoring.py --quick   # a few seconds per figure
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.registry import LoadedModel
from core.scoring import Scorer, ScoringConfig
from core.scoring.backtest import run_backtest
from core.scoring.forest import CompiledForest
from core.scoring.training import fit_detector, select_forecaster, synthetic_series
from core.wire import Reading

START = datetime(2026, 1, 1, tzinfo=UTC)


def timed(fn: Callable[[], object], min_s: float) -> tuple[float, int]:
    """CPU seconds per call of ``fn`` (repeated for at least ``min_s``) and the call count."""
    fn()
    n = 0
    t0 = time.process_time()
    while True:
        fn()
        n += 1
        el = time.process_time() - t0
        if el >= min_s:
            return el / n, n


def models() -> tuple[LoadedModel, LoadedModel]:
    series = synthetic_series(21, n_series=8, length=800)
    forest, finfo = fit_detector(series, ScoringConfig(), seed=21)
    spec, sinfo = select_forecaster(series, ScoringConfig())
    return LoadedModel("anomaly_detector", 1, forest, finfo), LoadedModel(
        "forecaster", 1, spec, sinfo
    )


def values(n_sensors: int, n_steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.uniform(-3, 6, size=n_sensors))
    ar = np.zeros((n_steps, n_sensors))
    e = rng.normal(size=(n_steps, n_sensors))
    for i in range(1, n_steps):
        ar[i] = 0.8 * ar[i - 1] + e[i]
    return 100.0 + ar * scale


def bench_scorer(
    m: tuple[LoadedModel, LoadedModel], n_sensors: int, batch: int, steps: int
) -> tuple[float, float]:
    """(readings/s through score_batch, readings/s through the engine) with warm sensors."""
    sids = [f"s{i:04d}" for i in range(n_sensors)]
    warm_steps = 150
    x = values(n_sensors, warm_steps + 2 * steps, 0)
    sc = Scorer(ScoringConfig(), *m)
    hist = {
        s: [(START + timedelta(seconds=60 * k), float(x[k, j])) for k in range(warm_steps)]
        for j, s in enumerate(sids)
    }
    sc.warm_start_many(hist)
    batches: list[list[Reading]] = []
    flat = [
        Reading(sensor_id=sids[j], time=START + timedelta(seconds=60 * k), value=float(x[k, j]))
        for k in range(warm_steps, warm_steps + steps)
        for j in range(n_sensors)
    ]
    batches = [flat[i : i + batch] for i in range(0, len(flat), batch)]
    # A full collection now, not inside the timed loop: the warm start's hundreds of thousands of
    # history tuples trigger one, and it walks the whole heap (numba, scikit-learn: millions of
    # objects), once. Left in, it halved the first figure of a run (56k against 122k readings/s
    # for the same batches a moment later); the service pays it once at start, not per batch.
    del hist
    gc.collect()
    c0 = time.process_time()
    for b in batches:
        sc.score_batch(b)
    objects_rate = len(flat) / (time.process_time() - c0)
    t = np.repeat(
        START.timestamp() + 60.0 * np.arange(warm_steps + steps, warm_steps + 2 * steps), n_sensors
    )
    xs = x[warm_steps + steps :].ravel()
    sid_arr = sids * steps
    c0 = time.process_time()
    for a in range(0, len(t), batch):
        sc.score_arrays(sid_arr[a : a + batch], t[a : a + batch], xs[a : a + batch])
    arrays_rate = len(t) / (time.process_time() - c0)
    return objects_rate, arrays_rate


def bench_one_sensor(m: tuple[LoadedModel, LoadedModel], n: int) -> tuple[float, float]:
    """(readings/s with the whole series in one call, readings/s with one reading per call)."""
    x = values(1, 2 * n, 2).ravel()
    t = START.timestamp() + 60.0 * np.arange(2 * n)
    sc = Scorer(ScoringConfig(), *m)
    c0 = time.process_time()
    sc.score_arrays(["s"] * n, t[:n], x[:n])
    whole = n / (time.process_time() - c0)
    calls = min(n, 5_000)
    c0 = time.process_time()
    for i in range(n, n + calls):
        sc.score_arrays(["s"], t[i : i + 1], x[i : i + 1])
    return whole, calls / (time.process_time() - c0)


def kernel_startup() -> tuple[float, float]:
    """Wall seconds of building an Engine in a fresh interpreter: (cold compile, cached load)."""
    code = (
        "import time; from core.scoring.config import ScoringConfig; "
        "from core.scoring.engine import Engine, IfCalibration; "
        "from core.scoring.forecaster import ForecasterSpec; t0 = time.perf_counter(); "
        "Engine(ScoringConfig(), ForecasterSpec(), None, IfCalibration()); "
        "print(time.perf_counter() - t0)"
    )
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(root)}
        runs = [
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            for _ in range(2)
        ]
    cold, cached = (float(r.stdout.strip()) for r in runs)
    return cold, cached


def bench_backtest(m: tuple[LoadedModel, LoadedModel], n_sensors: int, rows: int) -> float:
    per = rows // n_sensors
    x = values(n_sensors, per, 1)
    buf = io.StringIO()
    buf.write("timestamp,value,sensor_id\n")
    for k in range(per):
        ts = (START + timedelta(seconds=60 * k)).isoformat()
        for j in range(n_sensors):
            buf.write(f"{ts},{float(x[k, j])!r},s{j}\n")
    text = buf.getvalue()
    sc = Scorer(ScoringConfig(), *m)
    c0 = time.process_time()
    run_backtest(sc, io.StringIO(text), io.StringIO())
    return per * n_sensors / (time.process_time() - c0)


def raw_costs(m: tuple[LoadedModel, LoadedModel], min_s: float) -> list[tuple[str, float]]:
    forest = m[0].model
    comp = CompiledForest(forest)
    rng = np.random.default_rng(2)
    x1, x1000 = rng.normal(size=(1, 6)), rng.normal(size=(1000, 6))
    out = [
        (
            "sklearn score_samples, 1 row (per call)",
            timed(lambda: forest.score_samples(x1), min_s)[0],
        ),
        (
            "sklearn score_samples, 1000 rows (per call)",
            timed(lambda: forest.score_samples(x1000), min_s)[0],
        ),
        ("compiled forest, 1 row (per call)", timed(lambda: comp.anomaly_score(x1), min_s)[0]),
        (
            "compiled forest, 1000 rows (per call)",
            timed(lambda: comp.anomaly_score(x1000), min_s)[0],
        ),
    ]
    from river import anomaly, drift, time_series

    hst: Any = anomaly.HalfSpaceTrees(
        n_trees=16,
        height=6,
        window_size=100,
        seed=1,
        limits={f"f{i}": (-4.0, 4.0) for i in range(6)},
    )
    feats = [{f"f{i}": float(v) for i, v in enumerate(row)} for row in rng.normal(size=(5000, 6))]
    it = iter(range(10**9))

    def hst_step() -> None:
        f = feats[next(it) % 5000]
        hst.score_one(f)
        hst.learn_one(f)

    out.append(
        ("river HalfSpaceTrees score_one+learn_one (per reading)", timed(hst_step, min_s)[0])
    )
    sn: Any = time_series.SNARIMAX(p=3, d=0, q=1)
    ys = rng.normal(size=5000).tolist()
    it2 = iter(range(10**9))

    def sn_step() -> None:
        sn.learn_one(ys[next(it2) % 5000])
        sn.forecast(horizon=1)

    out.append(("river SNARIMAX learn_one+forecast (per reading)", timed(sn_step, min_s)[0]))
    ad: Any = drift.ADWIN()  # type: ignore[no-untyped-call]
    it3 = iter(range(10**9))
    out.append(
        (
            "river ADWIN update (per reading)",
            timed(lambda: ad.update(ys[next(it3) % 5000]), min_s)[0],
        )
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    steps = 10 if args.quick else 40
    min_s = 0.3 if args.quick else 1.5
    m = models()
    print("| figure | value |\n|---|---:|")
    obj, arr = bench_scorer(m, 1000, 1000, steps)
    print(f"| score_batch, 1,000 sensors, batches of 1,000 (readings/s) | {obj:,.0f} |")
    print(f"| engine only (score_arrays), same (readings/s) | {arr:,.0f} |")
    obj, arr = bench_scorer(m, 1000, 100, max(steps // 4, 3))
    print(f"| score_batch, 1,000 sensors, batches of 100 (readings/s) | {obj:,.0f} |")
    rows = 20_000 if args.quick else 100_000
    print(f"| backtest, 100 series, {rows:,} rows (rows/s) | {bench_backtest(m, 100, rows):,.0f} |")
    one = 2_000 if args.quick else 10_000
    print(f"| backtest, 1 series, {one:,} rows (rows/s) | {bench_backtest(m, 1, one):,.0f} |")
    whole, single = bench_one_sensor(m, 5_000 if args.quick else 20_000)
    print(f"| engine only, 1 sensor, whole series in one call (readings/s) | {whole:,.0f} |")
    print(f"| engine only, 1 sensor, 1 reading per call (readings/s) | {single:,.0f} |")
    if not args.quick:
        cold, cached = kernel_startup()
        print(f"| kernel cold compile, fresh process (s, wall) | {cold:.1f} |")
        print(f"| kernel load from numba cache, fresh process (s, wall) | {cached:.2f} |")
    for name, sec in raw_costs(m, min_s):
        print(f"| {name} | {sec * 1e6:,.1f} µs |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
