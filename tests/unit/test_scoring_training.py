"""Offline fitting: forecaster order by AIC, forest on streaming features, registry round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from core.registry import load_active
from core.scoring import FEATURE_NAMES, ForecasterSpec, Scorer, ScoringConfig
from core.scoring.forecaster import as_spec
from core.scoring.training import (
    fit_detector,
    select_forecaster,
    stream_features,
    synthetic_series,
    write_artifact,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


def series_of(x: np.ndarray, interval_s: float) -> list[tuple[datetime, float]]:
    return [(START + timedelta(seconds=interval_s * i), float(v)) for i, v in enumerate(x)]


def ar2(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for i in range(2, n):
        x[i] = 1.2 * x[i - 1] - 0.5 * x[i - 2] + rng.normal()
    return x


def test_aic_picks_at_least_two_lags_for_ar2_and_no_seasonality() -> None:
    spec, info = select_forecaster(
        [series_of(ar2(1500, s), 60.0) for s in range(3)], ScoringConfig()
    )
    assert isinstance(spec, ForecasterSpec)
    assert spec.p >= 2 and spec.fourier_k == 0 and spec.d == 0
    assert spec.prior[1] == pytest.approx(1.2, abs=0.15)
    assert info["criterion"] == "aic" and info["order"]["p"] == spec.p


def test_aic_adds_seasonal_terms_for_a_daily_cycle() -> None:
    rng = np.random.default_rng(1)
    n = 3 * 96
    t = np.arange(n) * 900.0
    x = 10 * np.sin(2 * np.pi * t / 86400.0) + rng.normal(size=n) * 2.0
    spec, _ = select_forecaster([series_of(x, 900.0)], ScoringConfig())
    assert spec.fourier_k > 0


def test_random_walk_prefers_differencing_or_unit_root() -> None:
    rng = np.random.default_rng(2)
    x = np.cumsum(rng.normal(size=2000))
    spec, _ = select_forecaster([series_of(x, 60.0)], ScoringConfig())
    persistence = spec.d == 1 or spec.prior[1] > 0.9
    assert persistence


def test_fit_detector_uses_streaming_features_and_carries_calibration() -> None:
    series = synthetic_series(3, n_series=3, length=500)
    feats = stream_features(series, ScoringConfig())
    assert feats.shape[1] == len(FEATURE_NAMES) and feats.shape[0] > 800
    forest, info = fit_detector(series, ScoringConfig(), seed=3)
    assert isinstance(forest, IsolationForest)
    assert forest.n_features_in_ == len(FEATURE_NAMES)
    assert info["features"] == FEATURE_NAMES
    assert 0.3 < info["calibration"]["median"] < 0.6
    assert forest.sensorpipe_calibration_ == info["calibration"]


def test_too_short_series_are_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        fit_detector([series_of(np.arange(20.0), 60.0)], ScoringConfig(), seed=1)
    with pytest.raises(ValueError):
        select_forecaster([series_of(np.arange(20.0), 60.0)], ScoringConfig())


def test_artifacts_round_trip_through_the_registry(tmp_path: Path) -> None:
    series = synthetic_series(4, n_series=3, length=400)
    forest, finfo = fit_detector(series, ScoringConfig(), seed=4)
    spec, sinfo = select_forecaster(series, ScoringConfig())
    assert write_artifact(tmp_path, "anomaly_detector", forest, finfo) == 1
    assert write_artifact(tmp_path, "forecaster", spec, sinfo) == 1
    assert write_artifact(tmp_path, "forecaster", spec, sinfo) == 2
    det = load_active(tmp_path, "anomaly_detector", expected_features=FEATURE_NAMES)
    fc = load_active(tmp_path, "forecaster")
    assert fc.version == 2 and as_spec(fc.model) == spec
    sc = Scorer(ScoringConfig(), det, fc)
    assert sc.model_version == "anomaly_detector:v1"


def test_forecaster_spec_validation_and_dict_form() -> None:
    with pytest.raises(ValueError):
        ForecasterSpec(p=0)
    with pytest.raises(ValueError):
        ForecasterSpec(p=2, prior=(1.0,))
    assert as_spec({"p": 2, "d": 1, "prior": [0, 0.5, 0.1]}) == ForecasterSpec(
        p=2, d=1, prior=(0.0, 0.5, 0.1)
    )
    with pytest.raises(TypeError):
        as_spec("nope")


def test_scoring_config_validates_and_is_hashable() -> None:
    assert hash(ScoringConfig()) == hash(ScoringConfig())
    assert ScoringConfig() != ScoringConfig(threshold=0.6)
    for bad in ({"threshold": 1.5}, {"rls_forgetting": 0.2}, {"hst_height": 0}):
        with pytest.raises(ValueError):
            ScoringConfig(**bad)  # type: ignore[arg-type]
