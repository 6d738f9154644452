"""The model registry: saving, checksums, feature checks, activation history, shadow, promotion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core import registry
from core.errors import ModelError

FEATURES = ["value", "zscore_60", "delta_1"]


def _meta(**extra: Any) -> dict[str, Any]:
    return {
        "data_window": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-08T00:00:00Z"},
        "features": FEATURES,
        "parameters": {"n_estimators": 10},
        "metrics": {"f1": 0.9},
        **extra,
    }


def _save(d: Path, name: str = "anomaly_detector", payload: Any = None) -> int:
    return registry.save_version(d, name, payload or {"weights": [1.0, 2.0]}, _meta())


def test_save_writes_artifact_and_meta_with_checksum_and_versions(tmp_path: Path) -> None:
    v1 = _save(tmp_path)
    v2 = _save(tmp_path, payload={"weights": [3.0]})
    assert (v1, v2) == (1, 2)
    meta = json.loads((tmp_path / "anomaly_detector_v2.meta.json").read_text())
    assert meta["sha256"] == registry.sha256_file(tmp_path / "anomaly_detector_v2.joblib")
    assert meta["features"] == FEATURES
    assert meta["version"] == 2
    assert {"python", "scikit-learn", "numpy", "river", "statsmodels"} <= set(
        meta["library_versions"]
    )
    assert meta["trained_at"].endswith("Z")
    assert not (tmp_path / "active.json").exists()  # saving never activates


def test_save_refuses_incomplete_meta_and_bad_names(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as exc:
        registry.save_version(tmp_path, "m", {}, {"features": None})
    assert exc.value.reason == "invalid_meta"
    with pytest.raises(ModelError) as exc:
        registry.save_version(tmp_path, "../evil", {}, _meta())
    assert exc.value.reason == "invalid_name"


def test_load_round_trip_and_tag(tmp_path: Path) -> None:
    _save(tmp_path, payload={"w": 42})
    registry.activate(tmp_path, "anomaly_detector", 1)
    loaded = registry.load_active(tmp_path, "anomaly_detector", expected_features=FEATURES)
    assert loaded.model == {"w": 42}
    assert loaded.tag == "anomaly_detector:v1"


def test_tampered_artifact_is_refused_before_unpickling(tmp_path: Path) -> None:
    _save(tmp_path)
    registry.activate(tmp_path, "anomaly_detector", 1)
    path = tmp_path / "anomaly_detector_v1.joblib"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as exc:
        registry.load_active(tmp_path, "anomaly_detector")
    assert exc.value.reason == "checksum_mismatch"
    results = registry.verify(tmp_path)
    assert [(r.ok, r.reason) for r in results] == [(False, "checksum_mismatch")]


def test_missing_files_raise_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as exc:
        registry.load_active(tmp_path, "anomaly_detector")
    assert exc.value.reason == "missing"  # no active.json
    _save(tmp_path)
    registry.activate(tmp_path, "anomaly_detector", 1)
    with pytest.raises(ModelError) as exc:
        registry.load_active(tmp_path, "forecaster")
    assert exc.value.reason == "missing"  # not named in active.json
    (tmp_path / "anomaly_detector_v1.joblib").unlink()
    with pytest.raises(ModelError) as exc:
        registry.load_active(tmp_path, "anomaly_detector")
    assert exc.value.reason == "missing"
    assert any(r.reason == "missing" and not r.ok for r in registry.verify(tmp_path))


def test_corrupt_active_json_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "active.json").write_text('{"anomaly_detector": "one"}')
    with pytest.raises(ModelError) as exc:
        registry.read_active(tmp_path)
    assert exc.value.reason == "corrupt"
    (tmp_path / "active.json").write_text("{not json")
    with pytest.raises(ModelError) as exc:
        registry.read_active(tmp_path)
    assert exc.value.reason == "corrupt"


def test_feature_mismatch_is_refused(tmp_path: Path) -> None:
    _save(tmp_path)
    with pytest.raises(ModelError) as exc:
        registry.load_version(tmp_path, "anomaly_detector", 1, [*FEATURES, "hour_sin"])
    assert exc.value.reason == "incompatible"
    assert "hour_sin" in exc.value.detail


def test_activate_refuses_a_corrupt_version_and_keeps_the_active_one(tmp_path: Path) -> None:
    _save(tmp_path)
    _save(tmp_path)
    registry.activate(tmp_path, "anomaly_detector", 1)
    (tmp_path / "anomaly_detector_v2.joblib").write_bytes(b"not a model")
    with pytest.raises(ModelError):
        registry.activate(tmp_path, "anomaly_detector", 2)
    with pytest.raises(ModelError):
        registry.activate(tmp_path, "anomaly_detector", 7)
    assert registry.read_active(tmp_path) == {"anomaly_detector": 1}


def test_activate_and_rollback_follow_the_history_stack(tmp_path: Path) -> None:
    for _ in range(3):
        _save(tmp_path)
    _save(tmp_path, name="forecaster")
    registry.activate(tmp_path, "forecaster", 1)
    assert registry.activate(tmp_path, "anomaly_detector", 1) is None
    assert registry.activate(tmp_path, "anomaly_detector", 2) == 1
    assert registry.activate(tmp_path, "anomaly_detector", 3) == 2
    assert registry.rollback(tmp_path, "anomaly_detector") == 2
    assert registry.rollback(tmp_path, "anomaly_detector") == 1
    with pytest.raises(ModelError) as exc:
        registry.rollback(tmp_path, "anomaly_detector")
    assert exc.value.reason == "no_previous"
    # active.json stays a plain name -> version map that loaders read.
    doc = json.loads((tmp_path / "active.json").read_text())
    assert doc == {"anomaly_detector": 1, "forecaster": 1}
    actions = [e["action"] for e in registry.history(tmp_path, "anomaly_detector")]
    assert actions == ["activate", "activate", "activate", "rollback", "rollback"]


def test_rollback_after_a_hand_edit_returns_to_the_last_registry_activation(
    tmp_path: Path,
) -> None:
    for _ in range(3):
        _save(tmp_path)
    registry.activate(tmp_path, "anomaly_detector", 1)
    (tmp_path / "active.json").write_text('{"anomaly_detector": 3}')
    assert registry.rollback(tmp_path, "anomaly_detector") == 1


def test_verify_reports_every_artifact_and_dangling_references(tmp_path: Path) -> None:
    _save(tmp_path)
    _save(tmp_path, name="forecaster")
    (tmp_path / "active.json").write_text('{"anomaly_detector": 1, "forecaster": 4}')
    results = registry.verify(tmp_path)
    assert [(r.name, r.version, r.ok) for r in results] == [
        ("anomaly_detector", 1, True),
        ("forecaster", 1, True),
        ("forecaster", 4, False),
    ]


def test_shadow_load_stats_and_promotion(tmp_path: Path) -> None:
    _save(tmp_path, payload={"v": 1})
    _save(tmp_path, payload={"v": 2})
    registry.activate(tmp_path, "anomaly_detector", 1)
    assert registry.load_shadow(tmp_path, "anomaly_detector") is None
    with pytest.raises(ModelError):  # the active version cannot shadow itself
        registry.set_shadow(tmp_path, "anomaly_detector", 1)
    registry.set_shadow(tmp_path, "anomaly_detector", 2)
    shadow = registry.load_shadow(tmp_path, "anomaly_detector", FEATURES)
    assert shadow is not None and shadow.model == {"v": 2}
    assert registry.read_active(tmp_path) == {"anomaly_detector": 1}  # shadow never activates

    with pytest.raises(ModelError) as exc:  # no figures yet
        registry.promote(tmp_path, "anomaly_detector")
    assert exc.value.reason == "not_promotable"

    low = registry.ShadowStats(version=2, n_scored=5000, agreement=0.80)
    registry.record_shadow_stats(tmp_path, "anomaly_detector", low)
    with pytest.raises(ModelError) as exc:
        registry.promote(tmp_path, "anomaly_detector")
    assert "agreement 0.800" in exc.value.detail

    good = registry.ShadowStats(version=2, n_scored=5000, agreement=0.99)
    registry.record_shadow_stats(tmp_path, "anomaly_detector", good)
    assert registry.promote(tmp_path, "anomaly_detector") == 2
    assert registry.read_active(tmp_path) == {"anomaly_detector": 2}
    assert registry.read_shadow(tmp_path) == {}
    assert registry.rollback(tmp_path, "anomaly_detector") == 1  # promotion is reversible


def test_forecaster_promotion_checks_error_ratio_and_stale_figures(tmp_path: Path) -> None:
    for _ in range(3):
        _save(tmp_path, name="forecaster")
    registry.activate(tmp_path, "forecaster", 1)
    registry.set_shadow(tmp_path, "forecaster", 2)
    worse = registry.ShadowStats(version=2, n_scored=2000, active_error=1.0, candidate_error=1.2)
    registry.record_shadow_stats(tmp_path, "forecaster", worse)
    with pytest.raises(ModelError) as exc:
        registry.promote(tmp_path, "forecaster")
    assert "candidate error" in exc.value.detail
    # Figures of a version that is no longer the candidate are refused, and reset on a new shadow.
    with pytest.raises(ModelError):
        registry.record_shadow_stats(
            tmp_path, "forecaster", registry.ShadowStats(version=3, n_scored=1)
        )
    registry.set_shadow(tmp_path, "forecaster", 3)
    assert registry.read_shadow_stats(tmp_path, "forecaster") is None
    assert registry.promote(tmp_path, "forecaster", force=True) == 3


def test_list_versions_marks_active_and_shadow(tmp_path: Path) -> None:
    _save(tmp_path)
    _save(tmp_path)
    registry.activate(tmp_path, "anomaly_detector", 1)
    registry.set_shadow(tmp_path, "anomaly_detector", 2)
    rows = registry.list_versions(tmp_path)
    assert [(r.version, r.active, r.shadow) for r in rows] == [(1, True, False), (2, False, True)]
    assert rows[0].metrics == {"f1": 0.9}


def test_interrupted_save_does_not_reuse_a_version_number(tmp_path: Path) -> None:
    (tmp_path / "anomaly_detector_v4.joblib").write_bytes(b"orphan")
    assert _save(tmp_path) == 5


def test_committed_models_verify_and_load_with_this_code() -> None:
    """The shipped models/ must match the code: retrain (docs/ml/README.md) when features change."""
    from core.scoring import FEATURE_NAMES, Scorer, ScoringConfig

    models = Path(__file__).resolve().parents[2] / "models"
    assert all(r.ok for r in registry.verify(models))
    detector = registry.load_active(models, "anomaly_detector", list(FEATURE_NAMES))
    forecaster = registry.load_active(models, "forecaster")
    assert detector.meta["data_window"]["source"] == "datasets/synthetic/train.csv"
    assert Scorer(ScoringConfig(), detector, forecaster).model_version == "anomaly_detector:v1"
