"""Offline fitting: forecaster order by AIC, forest on streaming features, registry round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from core.registry import LoadedModel, load_active
from core.scoring import FEATURE_NAMES, ForecasterSpec, Scorer, ScoringConfig
from core.scoring.forecaster import as_spec
from core.scoring.forest import CompiledForest
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
            ScoringConfig(**bad)


def _loaded(name: str, model: object) -> LoadedModel:
    return LoadedModel(name, 1, model, {})


def _live_features(scorer: Scorer, series: list[tuple[datetime, float]]) -> np.ndarray:
    """Features of the warm readings the live scorer learned from, in reading order."""
    t = np.array([p[0].timestamp() for p in series])
    x = np.array([p[1] for p in series])
    rows: list[tuple[int, np.ndarray]] = []
    for pos, res in scorer.score_arrays(["train-0"] * len(t), t, x):
        keep = res.warm & res.learned
        rows.extend(zip(pos[keep].tolist(), res.features[keep], strict=True))
    rows.sort(key=lambda r: r[0])
    return np.array([r[1] for r in rows])


def test_training_features_match_the_live_scorer_with_the_selected_forecaster() -> None:
    # A random walk with a daily cycle: the chosen order differs from the default AR(3), d = 0,
    # so features computed with the default would differ from what the scorer sees.
    rng = np.random.default_rng(11)
    n = 3000
    x = 20.0 + np.cumsum(rng.normal(0.0, 0.3, n)) + 3.0 * np.sin(2 * np.pi * np.arange(n) / 288)
    series = series_of(x, 300.0)
    config = ScoringConfig(seed=2)
    spec, _ = select_forecaster([series], config)
    assert isinstance(spec, ForecasterSpec)
    assert (spec.p, spec.d, spec.fourier_k, spec.prior) != (3, 0, 0, ())
    forest, info = fit_detector([series], config, seed=2, spec=spec)
    assert info["forecaster_order"] == {"p": spec.p, "d": spec.d, "fourier_k": spec.fourier_k}

    train = stream_features([series], config, spec)
    live = _live_features(
        Scorer(config, _loaded("anomaly_detector", forest), _loaded("forecaster", spec)), series
    )
    # The live scorer may flag (and then not learn from) a reading the forest-less training
    # engine learned from; compare the readings both learned from, which must be identical.
    assert live.shape[0] > 0.9 * train.shape[0]
    m = min(len(train), len(live))
    first_diff = next(
        (i for i in range(m) if not np.allclose(train[i], live[i], rtol=1e-9, atol=1e-12)), m
    )
    assert first_diff > 0.9 * m, f"train and live features diverge at row {first_diff} of {m}"
    # The residual feature in particular is the one a wrong order shifts.
    default = stream_features([series], config)
    k = min(first_diff, len(default))
    assert not np.allclose(default[:k], train[:k])

    # And the forest was fitted on exactly these features: its calibration is their median.
    raw = CompiledForest(forest).anomaly_score(train)
    assert info["calibration"]["median"] == pytest.approx(float(np.median(raw)))


def test_fit_detector_default_spec_is_the_old_behaviour() -> None:
    series = synthetic_series(5, n_series=2, length=400)
    _, a = fit_detector(series, ScoringConfig(), seed=5)
    _, b = fit_detector(series, ScoringConfig(), seed=5, spec=ForecasterSpec())
    assert a["calibration"] == b["calibration"]
    assert a["forecaster_order"] == {"p": 3, "d": 0, "fourier_k": 0}
