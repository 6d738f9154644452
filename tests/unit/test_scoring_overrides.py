"""SCORING: the scoring library's tunables as one deployment setting, read alike by the scorer
and the API (parsing and refusals, and both services scoring with what it says)."""

from __future__ import annotations

import asyncio
import doctest
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from api.metrics import ApiMetrics
from api.models_cache import ModelsCache
from api.settings import ApiSettings
from core.scoring import ScoringConfig
from core.settings import load_settings
from scorer.settings import ScorerSettings
from scorer.worker import ScorerWorker

MODELS = Path(__file__).resolve().parents[2] / "models"  # the committed, active models
BASE: dict[str, Any] = {
    "database_url": "postgresql://unused@127.0.0.1/db",
    "mqtt_url": "mqtt://127.0.0.1:1883",
    "models_dir": str(MODELS),
}
SEASONAL = '{"profile_level_tau_s": 86400, "threshold": 0.6, "warmup_readings": 50}'


@pytest.fixture(autouse=True)
def no_scoring_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCORING", raising=False)


def test_without_scoring_the_library_defaults_apply() -> None:
    for text in (None, "{}", ""):  # unset, the .env.example default, an empty SCORING=
        s = ScorerSettings(**BASE) if text is None else ScorerSettings(**BASE, scoring=text)
        assert s.scoring_overrides == {}
        assert s.scoring_config == ScoringConfig()


def test_overrides_apply_with_each_fields_type() -> None:
    s = ScorerSettings(**BASE, scoring=SEASONAL)
    cfg = s.scoring_config
    assert cfg == replace(
        ScoringConfig(), profile_level_tau_s=86400.0, threshold=0.6, warmup_readings=50
    )
    # A float field given an integer holds a float (the kernel packs floats and ints apart).
    assert type(cfg.profile_level_tau_s) is float and type(cfg.warmup_readings) is int
    assert s.scoring_overrides == {
        "profile_level_tau_s": 86400,
        "threshold": 0.6,
        "warmup_readings": 50,
    }


def test_scoring_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORING", '{"profile_level_tau_s": 86400}')
    for cls in (ScorerSettings, ApiSettings):
        assert cls(**BASE).scoring_config.profile_level_tau_s == 86400.0


def test_detector_weights_merge_with_the_defaults() -> None:
    s = ApiSettings(**BASE, scoring='{"detector_weights": {"isolation_forest": 0}}')
    assert s.scoring_config.detector_weights == {
        "forecast_residual": 1.0,
        "isolation_forest": 0.0,
        "half_space_trees": 1.0,
    }
    assert ScoringConfig().detector_weights["isolation_forest"] == 1.0  # defaults untouched


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"treshold": 0.6}', "unknown scoring setting 'treshold' (did you mean 'threshold'?)"),
        ('{"no_such_knob": 1}', "unknown scoring setting 'no_such_knob'"),
        ('{"warmup_readings": 50.5}', "'warmup_readings' must be an integer"),
        ('{"warmup_readings": true}', "'warmup_readings' must be a number"),
        ('{"max_sensors": 1180591620717411303424}', "'max_sensors' must be at most 2147483647"),
        ('{"threshold": "0.6"}', "'threshold' must be a number"),
        ('{"threshold": null}', "'threshold' must be a number"),
        ('{"threshold": NaN}', "'threshold' must be finite"),
        ('{"profile_level_tau_s": Infinity}', "'profile_level_tau_s' must be finite"),
        ('{"profile_level_tau_s": 1e999}', "'profile_level_tau_s' must be finite"),
        ('{"threshold": 1.5}', "threshold refused: threshold must be in (0, 1)"),
        ('{"profile_level_tau_s": 0}', "profile_level_tau_s refused: profile time constants"),
        ('{"detector_weights": {"isolation_forst": 0}}', "unknown detector 'isolation_forst'"),
        ('{"detector_weights": [0, 1, 1]}', "'detector_weights' must be an object"),
        ('{"detector_weights": {"half_space_trees": -1}}', "'detector_weights.half_space_trees'"),
        ('[{"threshold": 0.6}]', "SCORING must be a JSON object"),
        ("threshold=0.6", "SCORING is not valid JSON"),
    ],
)
def test_a_bad_override_is_refused_naming_the_key(text: str, message: str) -> None:
    for cls in (ScorerSettings, ApiSettings):
        with pytest.raises(ValidationError) as exc:
            cls(**BASE, scoring=text)
        [error] = exc.value.errors()
        assert error["loc"] == ("scoring",)
        assert message in error["msg"]


def test_a_bad_override_stops_the_command_with_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", BASE["database_url"])
    monkeypatch.setenv("MQTT_URL", BASE["mqtt_url"])
    monkeypatch.setenv("SCORING", '{"treshold": 0.6}')
    with pytest.raises(SystemExit) as exc:
        load_settings(ScorerSettings)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "SCORING: " in err and "'treshold'" in err and "Traceback" not in err


def test_the_scorer_service_scores_with_the_overrides() -> None:
    async def build() -> ScorerWorker:  # the MQTT client binds to a running loop
        return ScorerWorker(ScorerSettings(**BASE, scoring=SEASONAL + " "))

    models = asyncio.run(build())._load_models()
    for scorer in (models.scorer, models.shadow):
        if scorer is not None:
            assert scorer.config.profile_level_tau_s == 86400.0
            assert scorer.config.threshold == 0.6 and scorer.config.warmup_readings == 50


def test_the_api_scores_with_the_same_overrides_and_its_own_sensor_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scoring = '{"profile_level_tau_s": 86400, "threshold": 0.6, "max_sensors": 5}'
    settings = ApiSettings(**BASE, scoring=scoring, api_max_cached_sensors=123)
    with caplog.at_level(logging.INFO, logger="api.models_cache"):
        cache = ModelsCache(settings, pool=None, metrics=ApiMetrics())  # type: ignore[arg-type]
    try:
        config = cache._load_sync().scorer.config
    finally:
        cache.close()
    assert config.profile_level_tau_s == 86400.0 and config.threshold == 0.6
    # max_sensors is a memory bound, not a scoring behaviour: the API keeps its own.
    assert config.max_sensors == 123
    assert ScorerSettings(**BASE, scoring=scoring).scoring_config.max_sensors == 5
    [record] = [r for r in caplog.records if "SCORING" in r.getMessage()]
    assert record.scoring_overrides == {  # type: ignore[attr-defined]
        "profile_level_tau_s": 86400,
        "threshold": 0.6,
        "max_sensors": 5,
    }


def test_the_documented_examples_run() -> None:
    import core.scoring.config

    result = doctest.testmod(core.scoring.config)
    assert result.attempted >= 2 and result.failed == 0
