"""The pure scoring library shared by the scorer service, the API, ``train`` and ``backtest``.

One reading scores the same everywhere because everything goes through :class:`Scorer`:
an ensemble of a forecast-residual detector (online ARIMA-family forecaster with a prediction
band), an Isolation Forest on scale-free engineered features (``FEATURE_NAMES``) and online
half-space trees, combined into one calibrated score in [0, 1] with a threshold. Causal, learns
only from readings not judged anomalous, adapts to drift and persistent level shifts. The design
and its measured quality are in ``docs/ml/detection.md``. ``alerts.py`` (the alert state machine)
builds on the ``Score`` objects produced here.
"""

from __future__ import annotations

from core.scoring.config import ScoringConfig
from core.scoring.features import FEATURE_NAMES
from core.scoring.forecaster import ForecasterSpec
from core.scoring.results import DETECTOR_NAMES, ForecastPoint, Score
from core.scoring.scorer import Scorer

__all__ = [
    "DETECTOR_NAMES",
    "FEATURE_NAMES",
    "ForecastPoint",
    "ForecasterSpec",
    "Score",
    "Scorer",
    "ScoringConfig",
]
