"""``sensorpipe train`` and ``sensorpipe models``: from a CSV or PostgreSQL to loaded models."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

from core import registry
from core.errors import PipelineError
from core.scoring import FEATURE_NAMES, Scorer, ScoringConfig
from core.wire import Reading
from sensorpipe.commands import models as models_cmd
from sensorpipe.commands import train as train_cmd
from simulators.csvfiles import ReadingsWriter, write_labels
from simulators.simulation import Simulator, make_sensors

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, tzinfo=UTC)


def cli(module: ModuleType, argv: list[str]) -> int:
    """Run one command the way ``sensorpipe.__main__.main`` does (domain errors → exit 1)."""
    parser = argparse.ArgumentParser()
    module.configure(parser)
    try:
        return int(module.run(parser.parse_args(argv)))
    except PipelineError as exc:
        sys.stdout.write(f"error: {exc}\n")
        return 1


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 simulated sensors × 600 one-minute readings with a few labelled incidents."""
    d = tmp_path_factory.mktemp("data")
    sim = Simulator(make_sensors(3), seed=5, interval_s=60.0, start=START, anomaly_rate=0.004)
    with (d / "small.csv").open("w", newline="") as f:
        writer = ReadingsWriter(f)
        writer.write(sim.samples(600))
    with (d / "small_labels.csv").open("w", newline="") as f:
        write_labels(f, sim.close())
    return d / "small.csv"


def _train(csv: Path, models: Path, *extra: str) -> int:
    return cli(train_cmd, ["--from", str(csv), "--models-dir", str(models), "--quiet", *extra])


def test_train_writes_versions_that_the_scorer_loads(
    small_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    assert _train(small_csv, models, "--seed", "3") == 0
    assert not (models / "active.json").exists()  # nothing is activated unless asked
    meta = registry.read_meta(models, "anomaly_detector", 1)
    assert meta["features"] == list(FEATURE_NAMES)
    assert meta["parameters"]["seed"] == 3
    assert meta["data_window"]["readings"] == len(small_csv.read_text().splitlines()) - 1
    assert meta["data_window"]["start"].startswith("2026-01-05T00:00")
    assert {"scikit-learn", "numpy", "river", "statsmodels", "python"} <= set(
        meta["library_versions"]
    )
    fmeta = registry.read_meta(models, "forecaster", 1)
    assert fmeta["criterion"] == "aic" and set(fmeta["order"]) == {"p", "d", "fourier_k"}

    assert cli(models_cmd, ["--models-dir", str(models), "activate", "anomaly_detector", "1"]) == 0
    assert cli(models_cmd, ["--models-dir", str(models), "activate", "forecaster", "1"]) == 0
    detector = registry.load_active(models, "anomaly_detector", list(FEATURE_NAMES))
    forecaster = registry.load_active(models, "forecaster")
    scorer = Scorer(ScoringConfig(), detector, forecaster)
    readings = [
        Reading(sensor_id="s1", time=START + timedelta(minutes=i), value=20.0 + (i % 7) * 0.1)
        for i in range(150)
    ]
    scores = scorer.score_batch(readings)
    assert len(scores) == 150 and all(0.0 <= s.score <= 1.0 for s in scores)
    assert scorer.model_version == "anomaly_detector:v1"
    assert len(scorer.forecast("s1", 5)) == 5
    capsys.readouterr()
    assert cli(models_cmd, ["--models-dir", str(models), "list"]) == 0
    listing = capsys.readouterr().out
    assert "anomaly_detector" in listing and "active" in listing


def test_same_seed_gives_the_same_artifact_bytes(small_csv: Path, tmp_path: Path) -> None:
    for name, seed in (("a", "11"), ("b", "11"), ("c", "12")):
        assert _train(small_csv, tmp_path / name, "--seed", seed, "--only", "anomaly_detector") == 0
    sha = {
        name: registry.read_meta(tmp_path / name, "anomaly_detector", 1)["sha256"] for name in "abc"
    }
    assert sha["a"] == sha["b"]
    assert sha["a"] != sha["c"]


def test_activate_and_eval_record_held_out_figures(small_csv: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert _train(small_csv, models, "--activate", "--eval", str(small_csv)) == 0
    assert registry.read_active(models) == {"anomaly_detector": 1, "forecaster": 1}
    metrics = registry.read_meta(models, "anomaly_detector", 1)["metrics"]
    assert 0.0 <= metrics["eval_event_recall"] <= 1.0
    assert metrics["eval_incidents"] >= 1
    fmetrics = registry.read_meta(models, "forecaster", 1)["metrics"]
    assert fmetrics["one_step_mae_scaled"] > 0.0
    # A second training run is a new version; rollback returns to the first.
    assert _train(small_csv, models, "--activate", "--seed", "8") == 0
    assert registry.read_active(models)["anomaly_detector"] == 2
    assert cli(models_cmd, ["--models-dir", str(models), "rollback", "anomaly_detector"]) == 0
    assert registry.read_active(models)["anomaly_detector"] == 1


def test_models_verify_fails_on_a_tampered_artifact(small_csv: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert _train(small_csv, models, "--activate", "--only", "forecaster") == 0
    assert cli(models_cmd, ["--models-dir", str(models), "verify"]) == 0
    path = models / "forecaster_v1.joblib"
    path.write_bytes(path.read_bytes() + b"\x00")
    assert cli(models_cmd, ["--models-dir", str(models), "verify"]) == 1
    assert cli(models_cmd, ["--models-dir", str(models), "activate", "forecaster", "1"]) == 1


def _insert(db_url: str, sensor: str, start: datetime, n: int, step_s: float) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sensors (sensor_id, sensor_type, unit) VALUES (%s, 'temperature', 'Cel')"
            " ON CONFLICT DO NOTHING",
            (sensor,),
        )
        with (
            conn.cursor() as cur,
            cur.copy("COPY sensor_readings (sensor_id, time, value) FROM STDIN") as copy,
        ):
            for i in range(n):
                value = 20.0 + 2.0 * ((i % 96) / 96.0) + 0.05 * ((i * 7919) % 13)
                copy.write_row((sensor, start + timedelta(seconds=i * step_s), value))


def test_train_from_the_database_over_a_window(db_url: str, tmp_path: Path) -> None:
    _insert(db_url, "db-temp-1", START, 800, 60.0)
    _insert(db_url, "db-temp-2", START, 800, 60.0)
    since, until = START + timedelta(minutes=100), START + timedelta(minutes=700)
    models = tmp_path / "models"
    argv = [
        "--from-db",
        "--database-url",
        db_url,
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
        "--models-dir",
        str(models),
        "--quiet",
        "--activate",
    ]
    assert cli(train_cmd, argv) == 0
    window = registry.read_meta(models, "forecaster", 1)["data_window"]
    assert window["source"] == "database"
    assert window["readings"] == 2 * 600  # [since, until) at one reading a minute, two sensors
    assert window["start"] == since.isoformat()
    assert registry.read_meta(models, "anomaly_detector", 1)["sensors"] == [
        "db-temp-1",
        "db-temp-2",
    ]


def test_train_from_the_database_needs_a_window_and_data(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = str(tmp_path / "m")
    assert cli(train_cmd, ["--from-db", "--database-url", db_url, "--models-dir", models]) == 1
    assert "--since and --until" in capsys.readouterr().out
    empty = [
        "--from-db",
        "--database-url",
        db_url,
        "--since",
        "2020-01-01T00:00:00Z",
        "--until",
        "2020-01-02T00:00:00Z",
        "--models-dir",
        models,
        "--quiet",
    ]
    assert cli(train_cmd, empty) == 1
    assert "no readings" in capsys.readouterr().out
    assert not Path(models, "active.json").exists()


def test_meta_json_is_plain_json_with_checksum(small_csv: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert _train(small_csv, models, "--only", "forecaster") == 0
    doc = json.loads((models / "forecaster_v1.meta.json").read_text())
    assert doc["sha256"] == registry.sha256_file(models / "forecaster_v1.joblib")
    assert doc["name"] == "forecaster" and doc["version"] == 1


def test_models_shadow_and_promote_through_the_cli(
    small_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    base = ["--models-dir", str(models)]
    assert _train(small_csv, models, "--only", "forecaster", "--activate") == 0
    assert _train(small_csv, models, "--only", "forecaster") == 0
    assert cli(models_cmd, [*base, "shadow", "forecaster", "2"]) == 0
    assert registry.load_shadow(models, "forecaster") is not None
    capsys.readouterr()
    assert cli(models_cmd, [*base, "promote", "forecaster"]) == 1  # no shadow figures yet
    assert "no shadow figures" in capsys.readouterr().out
    stats = registry.ShadowStats(version=2, n_scored=50, active_error=1.0, candidate_error=0.9)
    registry.record_shadow_stats(models, "forecaster", stats)
    assert cli(models_cmd, [*base, "promote", "forecaster", "--min-scored", "10"]) == 0
    assert registry.read_active(models) == {"forecaster": 2}
    assert cli(models_cmd, [*base, "history", "forecaster"]) == 0
    assert "promote" in capsys.readouterr().out
