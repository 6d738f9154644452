"""CSV files of simulated readings (``--out``) and of ground-truth incidents (``--labels``).

Readings: ``timestamp,sensor_id,value,sensor_type,unit,is_anomaly,anomaly_kind`` — one row per
reading, in tick order; ``timestamp`` is RFC 3339 UTC with milliseconds (``…T10:00:00.250Z``),
``is_anomaly`` is ``1``/``0`` and ``anomaly_kind`` is empty for normal readings.

Labels: ``sensor_id,kind,start,end`` — one row per incident, ordered by start; ``start`` and
``end`` are the timestamps of the first and last affected (for ``dropout``: missing) reading,
inclusive, in the same format.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TextIO

from core.wire import Reading
from simulators.anomalies import Incident
from simulators.simulation import Sample

READING_COLUMNS = (
    "timestamp",
    "sensor_id",
    "value",
    "sensor_type",
    "unit",
    "is_anomaly",
    "anomaly_kind",
)
LABEL_COLUMNS = ("sensor_id", "kind", "start", "end")


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(s: str) -> datetime:
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"timestamp {s!r} has no offset")
    return t.astimezone(UTC)


class ReadingsWriter:
    """Writes samples as they are produced, so a long run never holds them in memory."""

    def __init__(self, fh: TextIO) -> None:
        self._w = csv.writer(fh, lineterminator="\n")
        self._w.writerow(READING_COLUMNS)
        self.rows = 0

    def write(self, samples: Iterable[Sample]) -> None:
        for s in samples:
            r = s.reading
            self._w.writerow(
                (
                    format_time(r.time),
                    r.sensor_id,
                    repr(r.value),
                    r.sensor_type or "",
                    r.unit or "",
                    int(s.anomaly is not None),
                    s.anomaly or "",
                )
            )
            self.rows += 1


def read_readings(fh: TextIO) -> Iterator[Sample]:
    for row in csv.DictReader(fh):
        reading = Reading(
            sensor_id=row["sensor_id"],
            time=parse_time(row["timestamp"]),
            value=float(row["value"]),
            sensor_type=row["sensor_type"] or None,
            unit=row["unit"] or None,
        )
        yield Sample(reading, row["anomaly_kind"] or None)


def write_labels(fh: TextIO, incidents: Iterable[Incident]) -> int:
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(LABEL_COLUMNS)
    n = 0
    for i in incidents:
        w.writerow((i.sensor_id, i.kind, format_time(i.start), format_time(i.end)))
        n += 1
    return n


def read_labels(fh: TextIO) -> list[Incident]:
    return [
        Incident(row["sensor_id"], row["kind"], parse_time(row["start"]), parse_time(row["end"]))
        for row in csv.DictReader(fh)
    ]
