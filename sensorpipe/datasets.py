"""Reading the CSV datasets of ``datasets/`` (and ``sensorpipe simulate --out``) into series.

One reading per row; the columns that matter are ``sensor_id``, ``timestamp`` (RFC 3339 with an
offset; ``time`` is accepted too) and ``value``; ``sensor_type`` and ``unit`` are kept when present.
Labels files have one incident per row: ``sensor_id, kind, start, end`` (inclusive times).

``train``, the notebooks and the benchmarks all read data through this module, so a dataset means
the same thing to each of them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from core.errors import ConfigError

Series = list[tuple[datetime, float]]


@dataclass(slots=True)
class SensorSeries:
    """All readings of one sensor, sorted by time."""

    sensor_id: str
    sensor_type: str | None = None
    unit: str | None = None
    points: Series = field(default_factory=list)

    @property
    def times(self) -> list[datetime]:
        return [t for t, _ in self.points]

    @property
    def values(self) -> list[float]:
        return [v for _, v in self.points]


@dataclass(frozen=True, slots=True)
class Label:
    """One labelled incident: readings of ``sensor_id`` in [start, end] belong to it."""

    sensor_id: str
    kind: str
    start: datetime
    end: datetime


def parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ConfigError(f"timestamp {text!r} has no UTC offset")
    return t


def _time_column(fieldnames: Iterable[str]) -> str:
    names = set(fieldnames)
    for candidate in ("timestamp", "time"):
        if candidate in names:
            return candidate
    raise ConfigError("dataset CSV needs a 'timestamp' (or 'time') column")


def load_readings(
    path: Path | str, sensors: Iterable[str] | None = None
) -> dict[str, SensorSeries]:
    """Readings of a dataset CSV grouped by sensor id (sorted; optionally only ``sensors``), each
    sensor's readings sorted by time."""
    wanted = set(sensors) if sensors is not None else None
    out: dict[str, SensorSeries] = {}
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"sensor_id", "value"} <= set(reader.fieldnames):
            raise ConfigError(f"{path}: a dataset CSV needs sensor_id, timestamp and value columns")
        tcol = _time_column(reader.fieldnames)
        for row in reader:
            sid = row["sensor_id"]
            if wanted is not None and sid not in wanted:
                continue
            s = out.get(sid)
            if s is None:
                s = out[sid] = SensorSeries(
                    sid, row.get("sensor_type") or None, row.get("unit") or None
                )
            s.points.append((parse_time(row[tcol]), float(row["value"])))
    for s in out.values():
        s.points.sort(key=lambda p: p[0])
    # Sorted by sensor id: training replays series in this order, so every caller (train, the
    # notebooks) fits the same model from the same file.
    return dict(sorted(out.items()))


def load_labels(path: Path | str) -> list[Label]:
    with Path(path).open(newline="") as f:
        return [
            Label(r["sensor_id"], r["kind"], parse_time(r["start"]), parse_time(r["end"]))
            for r in csv.DictReader(f)
        ]


def labels_path_for(path: Path | str) -> Path:
    """The labels file that sits beside a readings file: ``x.csv`` → ``x_labels.csv``."""
    p = Path(path)
    return p.with_name(f"{p.stem}_labels.csv")


def window(series: Iterable[SensorSeries]) -> dict[str, str | int]:
    """The data window of a training set, for a model's meta.json."""
    items = list(series)
    starts = [s.points[0][0] for s in items if s.points]
    ends = [s.points[-1][0] for s in items if s.points]
    if not starts:
        return {"start": "", "end": "", "sensors": 0, "readings": 0}
    return {
        "start": min(starts).isoformat(),
        "end": max(ends).isoformat(),
        "sensors": len(items),
        "readings": sum(len(s.points) for s in items),
    }
