"""Held-out evaluation of trained models through the streaming ``Scorer``.

Used by ``sensorpipe train --eval``, notebook 02 and ``benchmarks/bench_forecast.py``, so the
figures in a model's meta.json, the notebook and the docs are computed one way.

Event matching is the rule of ``benchmarks/bench_detection.py`` (docs/ml/detection.md):

* an incident ``[start, end]`` is *detected* when any reading of its sensor flagged
  ``is_anomaly`` falls in ``[start, end + grace]`` (``grace`` readings of the sensor's interval);
* flagged readings of one sensor form *runs* (merged when fewer than ``merge`` readings apart);
  a run that overlaps no incident window is one false positive; precision = runs overlapping an
  incident / all runs; recall = detected incidents / incidents; F1 from the two;
* ``dropout`` incidents have no readings to flag (the deadman timer's job) and are left out of
  the value detectors' figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.registry import LoadedModel, load_active
from core.scoring import DETECTOR_NAMES, FEATURE_NAMES, Scorer, ScoringConfig
from sensorpipe.datasets import Label, SensorSeries, labels_path_for, load_labels, load_readings

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

GRACE_READINGS = 10
MERGE_READINGS = 10
CHUNK = 5000


@dataclass(slots=True)
class Scored:
    """Per-sensor arrays of one scored dataset, in time order."""

    t: F64
    x: F64
    score: F64
    flag: B
    expected: F64  # one-step forecast before the reading (NaN without history)
    sigma: F64  # its residual sigma
    features: F64  # (n, len(FEATURE_NAMES)) engineered features the detectors saw
    detectors: F64  # (n, 3) each detector's calibrated score, in DETECTOR_NAMES order


@dataclass(slots=True)
class Tally:
    incidents: int = 0
    detected: int = 0
    runs: int = 0
    true_runs: int = 0
    delays: list[int] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.incidents += other.incidents
        self.detected += other.detected
        self.runs += other.runs
        self.true_runs += other.true_runs
        self.delays.extend(other.delays)

    @property
    def precision(self) -> float:
        return self.true_runs / self.runs if self.runs else 1.0

    @property
    def recall(self) -> float:
        return self.detected / self.incidents if self.incidents else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score_series(scorer: Scorer, series: Iterable[SensorSeries]) -> dict[str, Scored]:
    """Stream every sensor through ``scorer`` in global timestamp order, as a live feed would."""
    items = [s for s in series if s.points]
    sids = np.concatenate([[s.sensor_id] * len(s.points) for s in items])
    t = np.concatenate([[p[0].timestamp() for p in s.points] for s in items])
    x = np.concatenate([[p[1] for p in s.points] for s in items])
    n = len(t)
    score, expected, sigma = np.zeros(n), np.full(n, np.nan), np.full(n, np.nan)
    flag = np.zeros(n, dtype=bool)
    feats = np.zeros((n, len(FEATURE_NAMES)))
    dets = np.zeros((n, len(DETECTOR_NAMES)))
    order = np.argsort(t, kind="stable")
    for a in range(0, n, CHUNK):
        idx = order[a : a + CHUNK]
        for pos, res in scorer.score_arrays(list(sids[idx]), t[idx], x[idx]):
            i = idx[pos]
            score[i], flag[i] = res.score, res.is_anomaly
            expected[i] = np.where(res.has_history, res.expected, np.nan)
            sigma[i] = res.sigma
            feats[i] = res.features
            dets[i] = res.detectors
    out: dict[str, Scored] = {}
    off = 0
    for s in items:
        sl = slice(off, off + len(s.points))
        out[s.sensor_id] = Scored(
            t[sl], x[sl], score[sl], flag[sl], expected[sl], sigma[sl], feats[sl], dets[sl]
        )
        off += len(s.points)
    return out


def reading_kinds(scored: Mapping[str, Scored], labels: Sequence[Label]) -> dict[str, list[str]]:
    """For each sensor, the incident kind of each scored reading ("" outside incidents)."""
    out = {sid: [""] * len(s.t) for sid, s in scored.items()}
    for lb in labels:
        s = scored.get(lb.sensor_id)
        if s is None:
            continue
        inside = np.flatnonzero((s.t >= lb.start.timestamp()) & (s.t <= lb.end.timestamp()))
        for i in inside.tolist():
            out[lb.sensor_id][i] = lb.kind
    return out


def runs_of(flags: B, merge: int) -> list[tuple[int, int]]:
    """Index ranges of flagged readings, merging runs fewer than ``merge`` readings apart."""
    idx = np.flatnonzero(flags)
    out: list[tuple[int, int]] = []
    for i in idx.tolist():
        if out and i - out[-1][1] <= merge:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def event_tallies(
    scored: Mapping[str, Scored],
    labels: Sequence[Label],
    interval_s: float,
    *,
    grace: int = GRACE_READINGS,
    merge: int = MERGE_READINGS,
) -> dict[str, Tally]:
    """Per-kind tallies (dropouts excluded) plus ``"all"`` with the false-positive runs."""
    by_sensor: dict[str, list[Label]] = defaultdict(list)
    for lb in labels:
        by_sensor[lb.sensor_id].append(lb)
    out: dict[str, Tally] = defaultdict(Tally)
    for sid, s in scored.items():
        windows = []
        for lb in by_sensor.get(sid, []):
            a, b = lb.start.timestamp(), lb.end.timestamp() + grace * interval_s
            windows.append((a, b))
            if lb.kind == "dropout":
                continue
            tally = Tally(incidents=1)
            hit = np.flatnonzero(s.flag & (s.t >= a) & (s.t <= b))
            if hit.size:
                tally.detected = 1
                tally.delays.append(int(hit[0] - np.searchsorted(s.t, a)))
            out[lb.kind].add(tally)
            out["all"].add(tally)
        for ra, rb in runs_of(s.flag, merge):
            overlaps = any(s.t[ra] <= b and s.t[rb] >= a for a, b in windows)
            out["all"].add(Tally(runs=1, true_runs=int(overlaps)))
    return dict(out)


def one_step_forecast_metrics(
    scored: Mapping[str, Scored], labels: Sequence[Label], interval_s: float
) -> dict[str, float]:
    """One-step forecast error on readings outside labelled incidents.

    ``one_step_mase`` is the MAE divided by the MAE of the naive forecast (the previous value) on
    the same readings: below 1 beats persistence.
    """
    errs: list[F64] = []
    naive: list[F64] = []
    for sid, s in scored.items():
        normal = np.ones(len(s.t), dtype=bool)
        for lb in labels:
            if lb.sensor_id == sid:
                a, b = lb.start.timestamp(), lb.end.timestamp() + GRACE_READINGS * interval_s
                normal &= ~((s.t >= a) & (s.t <= b))
        ok = normal[1:] & normal[:-1] & np.isfinite(s.expected[1:])
        errs.append(np.abs(s.x[1:] - s.expected[1:])[ok])
        naive.append(np.abs(s.x[1:] - s.x[:-1])[ok])
    e, nv = np.concatenate(errs), np.concatenate(naive)
    return {
        "one_step_mae_scaled": float(np.mean(e)) / max(float(np.mean(nv)), 1e-12),
        "one_step_readings": float(len(e)),
    }


def typical_interval_s(series: Iterable[SensorSeries]) -> float:
    steps = [
        np.median(np.diff([p[0].timestamp() for p in s.points]))
        for s in series
        if len(s.points) > 2
    ]
    return float(np.median(steps)) if steps else 1.0


def evaluate_models(
    path: Path, models: Mapping[str, Any], models_dir: Path, config: ScoringConfig | None = None
) -> dict[str, dict[str, Any]]:
    """Figures of ``models`` (name → fitted model; a missing one is the active version) on a
    labelled held-out dataset; returns metrics per model name, for meta.json."""
    config = config or ScoringConfig()
    loaded: dict[str, LoadedModel] = {}
    for name in ("anomaly_detector", "forecaster"):
        if name in models:
            loaded[name] = LoadedModel(name, 0, models[name], {})
        else:
            features = list(FEATURE_NAMES) if name == "anomaly_detector" else None
            loaded[name] = load_active(models_dir, name, features)
    series = list(load_readings(path).values())
    labels = load_labels(labels_path_for(path))
    interval = typical_interval_s(series)
    scored = score_series(Scorer(config, loaded["anomaly_detector"], loaded["forecaster"]), series)
    tallies = event_tallies(scored, labels, interval)
    overall = tallies.get("all", Tally())
    out: dict[str, dict[str, Any]] = {}
    if "anomaly_detector" in models:
        out["anomaly_detector"] = {
            "eval_dataset": str(path),
            "eval_event_precision": overall.precision,
            "eval_event_recall": overall.recall,
            "eval_event_f1": overall.f1,
            "eval_incidents": overall.incidents,
            "eval_recall_by_kind": {
                k: round(v.recall, 4) for k, v in sorted(tallies.items()) if k != "all"
            },
        }
    if "forecaster" in models:
        out["forecaster"] = {
            "eval_dataset": str(path),
            **one_step_forecast_metrics(scored, labels, interval),
        }
    return out
