"""Loading the active models into a ready ``Scorer`` (the scorer refuses to start without them),
plus the optional *shadow* scorer built from candidates registered with ``set_shadow``.

A shadow scorer sees every reading the active one sees and is scored beside it, but never alerts;
``ShadowTally`` accumulates how often the two agree, their forecast errors and how many incidents
each would have opened, and the worker records that with ``core.registry.record_shadow_stats`` so
``sensorpipe models promote`` can decide on evidence from production traffic.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ModelError
from core.registry import LoadedModel, ShadowStats, load_active, load_shadow
from core.scoring import FEATURE_NAMES, Score, Scorer, ScoringConfig
from core.scoring.alerts import AlertConfig, AlertMachine

log = logging.getLogger(__name__)

DETECTOR = "anomaly_detector"
FORECASTER = "forecaster"


@dataclass(slots=True)
class ShadowTally:
    """Running comparison of a shadow scorer with the active one (owned by the scoring thread)."""

    versions: dict[str, int]
    machine: AlertMachine
    n_scored: int = 0
    agreed: int = 0
    n_errors: int = 0
    active_abs_error: float = 0.0
    candidate_abs_error: float = 0.0
    active_alerts: int = 0
    candidate_alerts: int = 0

    def add(self, active: Sequence[Score], candidate: Sequence[Score], version: str) -> None:
        for a, c in zip(active, candidate, strict=True):
            self.n_scored += 1
            self.agreed += a.is_anomaly == c.is_anomaly
            if a.expected is not None and c.expected is not None:
                self.n_errors += 1
                self.active_abs_error += abs(a.value - a.expected)
                self.candidate_abs_error += abs(c.value - c.expected)
            events = self.machine.observe(c, model_version=version, now=c.time)
            self.candidate_alerts += sum(e.state == "open" for e in events)

    def stats(self) -> list[tuple[str, ShadowStats]]:
        """One ``ShadowStats`` per model name in shadow (the figures are shared)."""
        agreement = self.agreed / self.n_scored if self.n_scored else None
        a_err = self.active_abs_error / self.n_errors if self.n_errors else None
        c_err = self.candidate_abs_error / self.n_errors if self.n_errors else None
        return [
            (
                name,
                ShadowStats(
                    version=version,
                    n_scored=self.n_scored,
                    agreement=agreement,
                    active_error=_finite(a_err),
                    candidate_error=_finite(c_err),
                    candidate_alerts=self.candidate_alerts,
                    active_alerts=self.active_alerts,
                ),
            )
            for name, version in sorted(self.versions.items())
        ]


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


@dataclass(slots=True)
class ModelSet:
    """A scorer built from one consistent pair of model versions (and its shadow, if any)."""

    scorer: Scorer
    loaded: tuple[LoadedModel, ...]
    shadow: Scorer | None = None
    tally: ShadowTally | None = field(default=None)

    @property
    def version(self) -> str:
        return self.scorer.model_version


def load_models(
    models_dir: str | Path,
    config: ScoringConfig | None = None,
    alert_config: AlertConfig | None = None,
) -> ModelSet:
    """Verify and load the active detector and forecaster; ``ModelError`` when either is
    missing, corrupt (checksum) or incompatible (feature list) — never a half-loaded scorer.

    A shadow candidate that cannot be loaded is logged and skipped: it never affects alerts.
    """
    config = config or ScoringConfig()
    detector = load_active(models_dir, DETECTOR, expected_features=list(FEATURE_NAMES))
    forecaster = load_active(models_dir, FORECASTER)
    models = ModelSet(
        Scorer(config, detector=detector, forecaster=forecaster), (detector, forecaster)
    )
    log.info("scoring with %s and %s", detector.tag, forecaster.tag)
    try:
        cand_det = load_shadow(models_dir, DETECTOR, expected_features=list(FEATURE_NAMES))
        cand_fc = load_shadow(models_dir, FORECASTER)
    except ModelError as exc:
        log.error("shadow candidate not loaded, running without a shadow: %s", exc)
        return models
    if cand_det is None and cand_fc is None:
        return models
    versions = {m.name: m.version for m in (cand_det, cand_fc) if m is not None}
    models.shadow = Scorer(config, detector=cand_det or detector, forecaster=cand_fc or forecaster)
    models.tally = ShadowTally(versions, AlertMachine(alert_config or AlertConfig()))
    log.info("shadow: %s", ", ".join(f"{n} v{v}" for n, v in sorted(versions.items())))
    return models
