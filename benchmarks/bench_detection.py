"""Detection quality of the scoring library: event-level precision, recall, F1 and delay.

Data: the simulator (``simulators``) with labelled incidents — one run per anomaly kind (only
that kind injected, so per-kind precision is real, not borrowed) plus one run with every kind
mixed. Models (forest + forecaster order) are fitted on *clean* simulator data of the training
seed; thresholds and windows were tuned on the tuning seeds; the table reports the evaluation
seeds, never used for either.

Event matching (also in docs/ml/detection.md):

* an incident ``[start, end]`` is detected when any reading of its sensor with ``is_anomaly``
  falls in ``[start, end + grace]`` (grace = ``--grace`` readings); its delay is the number of
  readings from ``start`` to the first such reading;
* anomaly *runs* are maximal sequences of ``is_anomaly`` readings of one sensor, merged when
  fewer than ``--merge`` readings apart; a run that overlaps no incident window is one false
  positive; precision = runs overlapping an incident / all runs;
* ``dropout`` incidents have no readings to score: they are the deadman's job (an alert when a
  sensor is silent for longer than its expected interval allows). The report checks the input
  that deadman needs — ``Scorer.expected_interval_s`` — by counting a dropout as detected when the
  silence exceeds 3 expected intervals, and keeps it out of the value detectors' figures.

Usage::

    .venv/bin/python benchmarks/bench_detection.py            # evaluation seeds, full size
    .venv/bin/python benchmarks/bench_detection.py --quick    # a smaller run for iteration
    .venv/bin/python benchmarks/bench_detection.py --tune     # the tuning seeds instead
    .venv/bin/python benchmarks/bench_detection.py --interval 900   # 15-minute readings
    .venv/bin/python benchmarks/bench_detection.py --set mixture_margin=1e9  # a setting changed
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.registry import LoadedModel
from core.scoring import ScoringConfig
from core.scoring.scorer import Scorer
from core.scoring.training import fit_detector, select_forecaster
from sensorpipe.evaluation import Tally, runs_of  # one event-matching rule for docs and train
from simulators import ANOMALY_KINDS, Incident, Simulator, make_sensors

TRAIN_SEED = 1
TUNING_SEEDS = (11, 12, 13)
EVAL_SEEDS = (101, 102, 103, 104, 105)
START = datetime(2026, 3, 2, tzinfo=UTC)
VALUE_KINDS = tuple(k for k in ANOMALY_KINDS if k != "dropout")

VARIANTS: dict[str, dict[str, float]] = {
    "forecast_residual": {
        "forecast_residual": 1.0,
        "isolation_forest": 0.0,
        "half_space_trees": 0.0,
    },
    "isolation_forest": {
        "forecast_residual": 0.0,
        "isolation_forest": 1.0,
        "half_space_trees": 0.0,
    },
    "half_space_trees": {
        "forecast_residual": 0.0,
        "isolation_forest": 0.0,
        "half_space_trees": 1.0,
    },
    "ensemble": {"forecast_residual": 1.0, "isolation_forest": 1.0, "half_space_trees": 1.0},
}


@dataclass
class Run:
    """One simulated, labelled data set: per-sensor times/values and its incidents."""

    times: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    incidents: list[Incident]
    interval_s: float


def simulate(seed: int, kinds: tuple[str, ...], args: argparse.Namespace) -> Run:
    sim = Simulator(
        make_sensors(args.sensors),
        seed=seed,
        interval_s=args.interval,
        start=START,
        anomaly_rate=args.rate if kinds else 0.0,
        kinds=kinds or ANOMALY_KINDS,
    )
    ts: dict[str, list[float]] = defaultdict(list)
    xs: dict[str, list[float]] = defaultdict(list)
    for sample in sim.samples(args.ticks):
        r = sample.reading
        ts[r.sensor_id].append(r.time.timestamp())
        xs[r.sensor_id].append(r.value)
    incidents = sim.close()
    return Run(
        {k: np.array(v) for k, v in ts.items()},
        {k: np.array(v) for k, v in xs.items()},
        incidents,
        args.interval,
    )


def train_models(
    args: argparse.Namespace, config: ScoringConfig
) -> tuple[LoadedModel, LoadedModel]:
    clean = simulate(TRAIN_SEED, (), argparse.Namespace(**{**vars(args), "sensors": 12}))
    series = [
        [
            (datetime.fromtimestamp(t, UTC), float(v))
            for t, v in zip(clean.times[s], clean.values[s], strict=True)
        ]
        for s in clean.times
    ]
    # The forecaster first: the forest is trained on features computed with it, as in `train`.
    spec, sinfo = select_forecaster(series, config)
    forest, finfo = fit_detector(series, config, seed=TRAIN_SEED, spec=spec)
    return (
        LoadedModel("anomaly_detector", 0, forest, finfo),
        LoadedModel("forecaster", 0, spec, sinfo),
    )


def score_run(
    run: Run, config: ScoringConfig, models: tuple[LoadedModel, LoadedModel]
) -> tuple[dict[str, np.ndarray], Scorer]:
    """Stream every sensor through one Scorer in timestamp order; is_anomaly per reading."""
    scorer = Scorer(config, models[0], models[1])
    sids = sorted(run.times)
    all_t = np.concatenate([run.times[s] for s in sids])
    all_x = np.concatenate([run.values[s] for s in sids])
    all_s = np.concatenate([[s] * len(run.times[s]) for s in sids])
    order = np.argsort(all_t, kind="stable")
    flags = np.zeros(len(all_t), dtype=bool)
    chunk = 5000
    for a in range(0, len(order), chunk):
        idx = order[a : a + chunk]
        for pos, res in scorer.score_arrays(list(all_s[idx]), all_t[idx], all_x[idx]):
            flags[idx[pos]] = res.is_anomaly
    out: dict[str, np.ndarray] = {}
    off = 0
    for s in sids:
        out[s] = flags[off : off + len(run.times[s])]
        off += len(run.times[s])
    return out, scorer


def evaluate(
    run: Run, flags: dict[str, np.ndarray], args: argparse.Namespace, scorer: Scorer | None = None
) -> dict[str, Tally]:
    """Tallies per kind (plus "dropout" via expected_interval_s when a scorer is given)."""
    grace_s = args.grace * run.interval_s
    by_sensor: dict[str, list[Incident]] = defaultdict(list)
    for inc in run.incidents:
        by_sensor[inc.sensor_id].append(inc)
    tallies: dict[str, Tally] = defaultdict(Tally)
    for sid, f in flags.items():
        t = run.times[sid]
        windows = []
        for inc in by_sensor.get(sid, []):
            a, b = inc.start.timestamp(), inc.end.timestamp() + grace_s
            if inc.kind == "dropout":
                if scorer is not None:
                    tallies["dropout"].add(_dropout(inc, t, scorer.expected_interval_s(sid)))
                windows.append((a, b))
                continue
            tal = Tally(incidents=1)
            hit = np.flatnonzero(f & (t >= a) & (t <= b))
            if hit.size:
                tal.detected = 1
                tal.delays.append(int(np.searchsorted(t, t[hit[0]]) - np.searchsorted(t, a)))
            tallies[inc.kind].add(tal)
            tallies[f"type:{sensor_type(sid)}"].add(tal)
            windows.append((a, b))
        for ra, rb in runs_of(f, args.merge):
            ta, tb = t[ra], t[rb]
            overl = any(ta <= b and tb >= a for a, b in windows)
            tallies["_runs"].add(Tally(runs=1, true_runs=int(overl)))
            tallies[f"type:{sensor_type(sid)}"].add(Tally(runs=1, true_runs=int(overl)))
    return tallies


def sensor_type(sid: str) -> str:
    """``sim-temp-001`` -> ``temp``."""
    return sid.split("-")[1] if sid.count("-") >= 2 else sid


def _dropout(inc: Incident, t: np.ndarray, interval: float | None) -> Tally:
    after = np.searchsorted(t, inc.end.timestamp(), side="right")
    before = after - 1
    if after >= len(t) or before < 0 or interval is None:
        return Tally(incidents=1)
    silent = t[after] - t[before]
    hit = silent > 3.0 * interval
    return Tally(incidents=1, detected=int(hit), delays=[3] if hit else [])


def run_variant(
    name: str,
    kinds_runs: dict[str, list[Run]],
    config: ScoringConfig,
    models: tuple[LoadedModel, LoadedModel],
    args: argparse.Namespace,
) -> dict[str, Tally]:
    cfg = replace(config, detector_weights=VARIANTS[name])
    result: dict[str, Tally] = defaultdict(Tally)
    for kind, runs in kinds_runs.items():
        for run in runs:
            flags, scorer = score_run(run, cfg, models)
            tallies = evaluate(run, flags, args, scorer)
            runs_t = tallies.pop("_runs", Tally())
            key = kind
            agg = Tally()
            for k, tal in tallies.items():
                if k == "dropout":
                    result["dropout"].add(tal)
                    continue
                if k.startswith("type:"):
                    if kind != "mixed":
                        result[k].add(tal)
                    continue
                agg.add(tal)
                if kind == "mixed":
                    result[f"mixed:{k}"].add(tal)
            agg.runs, agg.true_runs = runs_t.runs, runs_t.true_runs
            result[key].add(agg)
    return result


def fmt_row(name: str, tal: Tally) -> str:
    delay = f"{np.median(tal.delays):.0f}" if tal.delays else "-"
    return (
        f"| {name:<22} | {tal.incidents:>5} | {tal.detected:>5} | {tal.runs - tal.true_runs:>4} "
        f"| {tal.precision:6.3f} | {tal.recall:6.3f} | {tal.f1:6.3f} | {delay:>5} |"
    )


def waterflow(models: tuple[LoadedModel, LoadedModel], config: ScoringConfig) -> None:
    """river's WaterFlow (real, hourly, 1,268 readings): no labels ship with it — its docstring
    only describes four anomalous segments in words — so it gets a qualitative run: where the
    ensemble flags, against the described segments, without scoring."""
    from river.datasets import WaterFlow

    pts = [(x["Time"].astimezone(UTC), float(y)) for x, y in WaterFlow()]  # type: ignore[no-untyped-call]
    t = np.array([p[0].timestamp() for p in pts])
    v = np.array([p[1] for p in pts])
    run = Run({"waterflow": t}, {"waterflow": v}, [], 3600.0)
    flags, _ = score_run(run, config, models)
    f = flags["waterflow"]
    print(
        f"\n### river WaterFlow: {len(v)} hourly readings, {int(f.sum())} flagged, "
        f"warm-up ends {datetime.fromtimestamp(t[config.warmup_readings], UTC):%Y-%m-%d %H:%M}"
        f", median {np.median(v):.1f} l/s\n"
    )
    print("| flagged run start (UTC) | readings | min value | max value |\n|---|---:|---:|---:|")
    for a, b in runs_of(f, 3):
        seg = v[a : b + 1]
        start = datetime.fromtimestamp(t[a], UTC)
        print(f"| {start:%Y-%m-%d %H:%M} | {b - a + 1} | {seg.min():.1f} | {seg.max():.1f} |")
    low = runs_of(v < 0.6 * np.median(v), 3)
    print("\nlow-flow segments (< 60 % of the median; for orientation, not ground truth):")
    for a, b in low:
        print(
            f"  {datetime.fromtimestamp(t[a], UTC):%Y-%m-%d %H:%M} .. "
            f"{datetime.fromtimestamp(t[b], UTC):%Y-%m-%d %H:%M} ({b - a + 1} readings)"
        )


def _overrides(pairs: Sequence[str]) -> dict[str, float]:
    """``NAME=VALUE`` pairs as ScoringConfig overrides, each of its setting's type."""
    out: dict[str, float] = {}
    defaults = ScoringConfig()
    for pair in pairs:
        name, _, value = pair.partition("=")
        default = getattr(defaults, name, None)
        if isinstance(default, bool) or not isinstance(default, int | float):
            raise SystemExit(f"--set: {name!r} is not a numeric ScoringConfig setting")
        out[name] = type(default)(float(value))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer seeds/ticks, ensemble only")
    ap.add_argument("--tune", action="store_true", help="use the tuning seeds")
    ap.add_argument("--sensors", type=int, default=12)
    ap.add_argument("--ticks", type=int, default=3000)
    ap.add_argument("--interval", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=0.002)
    ap.add_argument("--grace", type=int, default=10, help="readings after an incident's end")
    ap.add_argument("--merge", type=int, default=10, help="anomaly runs closer than this merge")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--kinds", default=",".join((*VALUE_KINDS, "mixed")))
    ap.add_argument("--waterflow-only", action="store_true", help="only the WaterFlow run")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a numeric ScoringConfig setting (repeatable), e.g. mixture_margin=1e9",
    )
    args = ap.parse_args(argv)
    seeds: tuple[int, ...] = TUNING_SEEDS if args.tune else EVAL_SEEDS
    variants = args.variants.split(",")
    if args.quick:
        seeds = seeds[:2]
        args.ticks = min(args.ticks, 2000)
        variants = ["ensemble"] if args.variants == ",".join(VARIANTS) else variants
    config = replace(ScoringConfig(), **_overrides(args.set))
    t0 = time.perf_counter()
    models = train_models(args, config)
    print(
        f"trained in {time.perf_counter() - t0:.1f}s; forecaster order "
        f"{models[1].meta['order']}; forest rows {models[0].meta['n_rows']}"
    )
    if args.waterflow_only:
        waterflow(models, config)
        return 0
    kinds_runs: dict[str, list[Run]] = {}
    for kind in args.kinds.split(","):
        kinds = ANOMALY_KINDS if kind == "mixed" else (kind,)
        kinds_runs[kind] = [simulate(s, kinds, args) for s in seeds]
    print(
        f"seeds {seeds} ({'tuning' if args.tune else 'evaluation'}), {args.sensors} sensors x "
        f"{args.ticks} readings at {args.interval:g}s, rate {args.rate}, grace {args.grace}, "
        f"merge {args.merge}"
    )
    for name in variants:
        t1 = time.perf_counter()
        result = run_variant(name, kinds_runs, config, models, args)
        print(f"\n### {name}  ({time.perf_counter() - t1:.1f}s)\n")
        print(
            "| kind                   | incid | detec |   FP |   prec | recall |     F1 | delay |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        overall = Tally()
        for kind in kinds_runs:
            if kind in result:
                print(fmt_row(kind, result[kind]))
                if kind != "mixed":
                    overall.add(result[kind])
        print(fmt_row("all single-kind runs", overall))
        for key in sorted(k for k in result if k.startswith("mixed:")):
            tal = result[key]
            print(
                f"|   {key:<20} | {tal.incidents:>5} | {tal.detected:>5} |      |        "
                f"| {tal.recall:6.3f} |        | "
                f"{(np.median(tal.delays) if tal.delays else float('nan')):5.0f} |"
            )
        for key in sorted(k for k in result if k.startswith("type:")):
            print(fmt_row(f"  sensor {key[5:]}", result[key]))
        if "dropout" in result:
            tal = result["dropout"]
            print(
                f"| dropout (deadman input) | {tal.incidents:>5} | {tal.detected:>5} |      |  "
                f"      | {tal.recall:6.3f} |        |       |"
            )
    waterflow(models, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
