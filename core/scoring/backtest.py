"""Replay a CSV of readings through the streaming :class:`Scorer`, causally, and write scores.

This is the engine of ``sensorpipe backtest`` (and what a notebook calls): rows are replayed in
timestamp order per series — all series interleaved by time, as they would arrive live —
through exactly the code the live scorer runs, and one output row is written per input
row, in input order. Rows whose value or timestamp cannot be read are written with empty score
columns and counted, never fatal.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import IO

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError
from core.scoring.scorer import Scorer
from core.wire import Limits, check_time_window

F64 = npt.NDArray[np.float64]

OUTPUT_COLUMNS = ["timestamp", "value", "anomaly_score", "is_anomaly", "expected", "lower", "upper"]
# History of any age is scored: the live pipeline's age and skew limits do not apply.
BACKTEST_LIMITS = Limits(max_future_skew_s=None, max_age_s=None)
CHUNK_ROWS = 20_000
EPOCH_SECONDS_BELOW = 1e11


@dataclass(frozen=True, slots=True)
class BacktestResult:
    rows: int
    scored: int
    bad_rows: int
    anomalies: int
    sensors: int


def parse_time(text: str, tz: tzinfo) -> float:
    """Epoch seconds of an ISO-8601 timestamp or of an epoch number; naive times are read in
    ``tz``. Raises ValueError when unreadable.

    An epoch number is taken in seconds, or in milliseconds, microseconds or nanoseconds when
    it is too large to be seconds (as exports from JavaScript, databases and pandas write
    them): from 10^11 (year 5138 in seconds, 1973 in milliseconds) on, each further factor of
    1,000 is the next unit.
    """
    s = text.strip()
    try:
        epoch = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(epoch):
            raise ValueError(f"timestamp {s!r} is not finite")
        for _ in range(3):
            if abs(epoch) < EPOCH_SECONDS_BELOW:
                break
            epoch /= 1000.0
        return check_time_window(
            datetime.fromtimestamp(epoch, UTC), now=datetime.now(UTC), limits=BACKTEST_LIMITS
        ).timestamp()
    t = datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz)
    return t.timestamp()


def parse_value(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"value {text!r} is not finite")
    return v


def _fmt(v: float) -> str:
    return repr(float(v))


def run_backtest(
    scorer: Scorer,
    source: IO[str],
    sink: IO[str],
    *,
    tz: tzinfo = UTC,
    sensor_col: str = "sensor_id",
    progress: Callable[[int], None] | None = None,
) -> BacktestResult:
    """Score every row of ``source`` (CSV with ``timestamp,value[,sensor_col]``) into ``sink``.

    Semicolon- and tab-separated files are read too, as spreadsheets write them where the
    decimal mark is a comma; their values may then use one ("20,5")."""
    header = source.readline()
    delimiter = next((d for d in ",;\t" if d in header), ",")
    decimal_comma = delimiter != ","
    reader = csv.DictReader(itertools.chain([header], source), delimiter=delimiter)
    # Column names as spreadsheets write them too: "Timestamp", " value ".
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    reader.fieldnames = fields
    sensor_col = sensor_col.strip().lower()
    missing = {"timestamp", "value"} - set(fields)
    if missing:
        raise ConfigError(f"input CSV lacks column(s) {', '.join(sorted(missing))}; has {fields}")
    has_sensor = sensor_col in fields
    raw_ts: list[str] = []
    raw_v: list[str] = []
    sids: list[str] = []
    for row in reader:
        raw_ts.append(row.get("timestamp") or "")
        raw_v.append(row.get("value") or "")
        sids.append((row.get(sensor_col) or "") if has_sensor else "series")
    n = len(raw_ts)
    t = np.full(n, np.nan)
    x = np.full(n, np.nan)
    for i in range(n):
        try:
            t[i] = parse_time(raw_ts[i], tz)
            x[i] = parse_value(raw_v[i].replace(",", ".") if decimal_comma else raw_v[i])
        except (ValueError, OverflowError, OSError, TypeError):
            t[i] = np.nan
    named = np.array([s != "" for s in sids], dtype=bool)  # dtype: a header-only file has none
    good = np.flatnonzero(np.isfinite(t) & np.isfinite(x) & named)
    # Timestamp order per series; a stable sort keeps duplicates in file order.
    order = good[np.argsort(t[good], kind="stable")]
    out = _score(scorer, order, sids, t, x, progress)
    _write(sink, out, raw_ts, raw_v, sids, has_sensor)
    anomalies = int(np.nansum(out[:, 1] == 1.0))
    return BacktestResult(n, len(good), n - len(good), anomalies, len(set(sids[i] for i in good)))


def _score(
    scorer: Scorer,
    order: npt.NDArray[np.int64],
    sids: list[str],
    t: F64,
    x: F64,
    progress: Callable[[int], None] | None,
) -> F64:
    """``(n, 5)``: score, is_anomaly, expected, lower, upper (NaN where not scored)."""
    out = np.full((len(sids), 5), np.nan)
    z = scorer.config.band_z
    for a in range(0, len(order), CHUNK_ROWS):
        idx = order[a : a + CHUNK_ROWS]
        for pos, res in scorer.score_arrays([sids[i] for i in idx.tolist()], t[idx], x[idx]):
            rows = idx[pos]
            exp = np.where(res.has_history, res.expected, np.nan)
            out[rows, 0] = res.score
            out[rows, 1] = res.is_anomaly
            out[rows, 2] = exp
            out[rows, 3] = exp - z * res.sigma
            out[rows, 4] = exp + z * res.sigma
        if progress is not None:
            progress(len(idx))
    return out


def _write(
    sink: IO[str],
    out: F64,
    raw_ts: list[str],
    raw_v: list[str],
    sids: list[str],
    has_sensor: bool,
) -> None:
    w = csv.writer(sink, lineterminator="\n")
    w.writerow((["sensor_id"] if has_sensor else []) + OUTPUT_COLUMNS)
    for i, row in enumerate(out.tolist()):
        head = [sids[i]] if has_sensor else []
        if math.isnan(row[0]):
            w.writerow([*head, raw_ts[i], raw_v[i], "", "", "", "", ""])
            continue
        cells = ["" if math.isnan(v) else _fmt(v) for v in (row[2], row[3], row[4])]
        w.writerow([*head, raw_ts[i], raw_v[i], _fmt(row[0]), str(int(row[1])), *cells])
