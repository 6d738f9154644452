"""Loading the active models into a ready ``Scorer`` (the scorer refuses to start without them)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from core.registry import LoadedModel, load_active
from core.scoring import FEATURE_NAMES, Scorer, ScoringConfig

log = logging.getLogger(__name__)

DETECTOR = "anomaly_detector"
FORECASTER = "forecaster"


@dataclass(frozen=True, slots=True)
class ModelSet:
    """A scorer built from one consistent pair of model versions."""

    scorer: Scorer
    loaded: tuple[LoadedModel, ...]

    @property
    def version(self) -> str:
        return self.scorer.model_version


def load_models(models_dir: str | Path, config: ScoringConfig | None = None) -> ModelSet:
    """Verify and load the active detector and forecaster; ``ModelError`` when either is
    missing, corrupt (checksum) or incompatible (feature list) — never a half-loaded scorer."""
    detector = load_active(models_dir, DETECTOR, expected_features=list(FEATURE_NAMES))
    forecaster = load_active(models_dir, FORECASTER)
    scorer = Scorer(config or ScoringConfig(), detector=detector, forecaster=forecaster)
    log.info("scoring with %s and %s", detector.tag, forecaster.tag)
    return ModelSet(scorer, (detector, forecaster))
