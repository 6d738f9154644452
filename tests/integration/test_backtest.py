"""``sensorpipe backtest`` end to end through the CLI (subprocess), against a real registry dir."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from core.scoring import Scorer, ScoringConfig
from core.scoring.training import fit_detector, select_forecaster, synthetic_series, write_artifact
from core.wire import Reading

pytestmark = pytest.mark.integration

START = datetime(2025, 6, 1, tzinfo=UTC)  # older than the live retention limit on purpose


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models")
    series = synthetic_series(8, n_series=4, length=500)
    forest, finfo = fit_detector(series, ScoringConfig(), seed=8)
    spec, sinfo = select_forecaster(series, ScoringConfig())
    write_artifact(d, "anomaly_detector", forest, finfo)
    write_artifact(d, "forecaster", spec, sinfo)
    return d


def backtest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensorpipe", "backtest", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def make_series(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = 0.8 * x[i - 1] + rng.normal()
    x[n - 50] += 15.0
    return 30.0 + x


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_backtest_equals_streaming_and_keeps_input_order(models_dir: Path, tmp_path: Path) -> None:
    n = 400
    xa, xb = make_series(n, 1), 1000.0 + 50.0 * make_series(n, 2)
    times = [START + timedelta(seconds=60 * i) for i in range(n)]
    rows = [("a", times[i], xa[i]) for i in range(n)] + [("b", times[i], xb[i]) for i in range(n)]
    order = np.random.default_rng(0).permutation(len(rows))  # input order is not time order
    src = tmp_path / "in.csv"
    with src.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value", "sensor_id"])
        for k in order:
            sid, t, v = rows[k]
            w.writerow([t.isoformat().replace("+00:00", "Z"), repr(float(v)), sid])
    out = tmp_path / "out.csv"
    res = backtest("--input", str(src), "--output", str(out), "--models-dir", str(models_dir))
    assert res.returncode == 0, res.stderr
    got = read(out)
    assert len(got) == len(rows)
    assert list(got[0]) == [
        "sensor_id",
        "timestamp",
        "value",
        "anomaly_score",
        "is_anomaly",
        "expected",
        "lower",
        "upper",
    ]
    assert [g["sensor_id"] for g in got] == [rows[k][0] for k in order]

    from core.registry import load_active
    from core.scoring import FEATURE_NAMES

    live = Scorer(
        ScoringConfig(),
        load_active(models_dir, "anomaly_detector", expected_features=FEATURE_NAMES),
        load_active(models_dir, "forecaster"),
    )
    # The live scorer sees each sensor's readings in arrival (time) order, in small batches.
    stream = [
        Reading(sensor_id=s, time=t, value=float(v))
        for s, t, v in sorted(rows, key=lambda r: (r[1], r[0]))
    ]
    scores = {}
    for i in range(0, len(stream), 7):
        for s in live.score_batch(stream[i : i + 7]):
            scores[(s.sensor_id, s.time)] = s
    for k, g in zip(order, got, strict=True):
        sid, t, _ = rows[k]
        s = scores[(sid, t)]
        assert float(g["anomaly_score"]) == pytest.approx(s.score, abs=1e-9)
        assert g["is_anomaly"] == str(int(s.is_anomaly))
        if s.expected is None:
            assert g["expected"] == ""
        else:
            assert float(g["expected"]) == pytest.approx(s.expected, rel=1e-9)
    flagged = {(g["sensor_id"], g["timestamp"]) for g in got if g["is_anomaly"] == "1"}
    spike_time = times[n - 50].isoformat().replace("+00:00", "Z")
    assert ("a", spike_time) in flagged and ("b", spike_time) in flagged


def test_bad_rows_epoch_naive_and_tz(models_dir: Path, tmp_path: Path) -> None:
    x = make_series(300, 3)
    src = tmp_path / "in.csv"
    lines = ["timestamp,value"]
    for i, v in enumerate(x):
        t = START + timedelta(minutes=i)
        if i % 3 == 0:
            cell = str(t.timestamp())  # epoch seconds
        elif i % 3 == 1:
            cell = t.strftime("%Y-%m-%d %H:%M:%S")  # naive: read in --tz
        else:
            cell = t.isoformat()
        lines.append(f"{cell},{float(v)!r}")
    lines[10] = "not a time,1.0"
    lines[20] = lines[20].split(",")[0] + ",NaN"
    lines[30] = lines[30].split(",")[0] + ",abc"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    res = backtest("--input", str(src), "--output", str(out), "--models-dir", str(models_dir))
    assert res.returncode == 0, res.stderr
    assert "3 rows" in res.stderr
    got = read(out)
    assert len(got) == 300 and "sensor_id" not in got[0]
    empty = [i for i, g in enumerate(got) if g["anomaly_score"] == ""]
    assert empty == [9, 19, 29]
    assert got[9]["timestamp"] == "not a time"
    assert sum(g["is_anomaly"] == "1" for g in got) >= 1
    # With --tz the naive third of the rows moves two hours earlier: out of time order, so
    # those rows are replayed elsewhere in the sequence and scores change.
    out2 = tmp_path / "out2.csv"
    res = backtest(
        "--input",
        str(src),
        "--output",
        str(out2),
        "--models-dir",
        str(models_dir),
        "--tz",
        "Europe/Berlin",
    )
    assert res.returncode == 0, res.stderr
    assert [g["anomaly_score"] for g in read(out2)] != [g["anomaly_score"] for g in got]


def test_missing_models_fail_with_a_clear_message(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("timestamp,value\n2026-01-01T00:00:00Z,1.0\n")
    res = backtest(
        "--input",
        str(src),
        "--output",
        str(tmp_path / "o.csv"),
        "--models-dir",
        str(tmp_path / "empty"),
    )
    assert res.returncode == 1
    assert "sensorpipe train" in res.stderr
    assert not (tmp_path / "o.csv").exists()


def test_missing_columns_and_bad_tz(models_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("time,val\n1,2\n")
    res = backtest(
        "--input", str(src), "--output", str(tmp_path / "o.csv"), "--models-dir", str(models_dir)
    )
    assert res.returncode == 1 and "timestamp" in res.stderr
    res = backtest(
        "--input",
        str(src),
        "--output",
        str(tmp_path / "o.csv"),
        "--models-dir",
        str(models_dir),
        "--tz",
        "Mars/Olympus",
    )
    assert res.returncode == 1 and "time zone" in res.stderr


def test_spreadsheet_exports_epoch_units_and_no_rows(models_dir: Path, tmp_path: Path) -> None:
    """What real exports look like: a byte-order mark and capitalised, padded column names;
    epoch timestamps in milliseconds, microseconds or nanoseconds; or no rows at all."""
    x = make_series(200, 4)
    epochs = [(START + timedelta(minutes=i)).timestamp() for i in range(200)]

    def run(
        name: str, header: str, stamps: list[str], *, bom: bool = False, sep: str = ","
    ) -> list[dict[str, str]]:
        src = tmp_path / f"{name}.csv"
        # A semicolon file comes from where the decimal mark is a comma.
        cells = [repr(float(v)) if sep == "," else repr(float(v)).replace(".", ",") for v in x]
        body = "".join(f"{s}{sep}{c}\n" for s, c in zip(stamps, cells, strict=False))
        src.write_text(("\ufeff" if bom else "") + header + "\n" + body, encoding="utf-8")
        out = tmp_path / f"{name}.out.csv"
        res = backtest("--input", str(src), "--output", str(out), "--models-dir", str(models_dir))
        assert res.returncode == 0, res.stderr
        assert "unreadable" not in res.stderr
        return read(out)

    seconds = run("s", "timestamp,value", [repr(e) for e in epochs])
    assert len(seconds) == 200 and all(g["anomaly_score"] != "" for g in seconds)
    scores = [g["anomaly_score"] for g in seconds]
    for unit, factor in (("ms", 10**3), ("us", 10**6), ("ns", 10**9)):
        got = run(unit, "timestamp,value", [str(round(e * factor)) for e in epochs])
        assert [g["anomaly_score"] for g in got] == scores, unit
    excel = run("excel", "Timestamp, Value ", [repr(e) for e in epochs], bom=True)
    assert [g["anomaly_score"] for g in excel] == scores
    assert list(excel[0])[:2] == ["timestamp", "value"]
    semicolon = run("semicolon", "timestamp;value", [repr(e) for e in epochs], sep=";")
    assert [g["anomaly_score"] for g in semicolon] == scores

    empty = run("empty", "timestamp,value", [])
    assert empty == []
    assert (tmp_path / "empty.out.csv").read_text().startswith("timestamp,value,anomaly_score")
