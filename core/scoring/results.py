"""What the scoring library hands back: one ``Score`` per reading, ``ForecastPoint`` per step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

DETECTOR_NAMES: tuple[str, ...] = ("forecast_residual", "isolation_forest", "half_space_trees")


@dataclass(frozen=True, slots=True)
class Score:
    """The verdict on one reading.

    ``score`` is the calibrated ensemble score in [0, 1] (higher = more anomalous) and
    ``is_anomaly`` is ``warm and score >= threshold``. ``expected``/``lower``/``upper`` are the
    one-step forecast and its band for this reading's time (``None`` before the sensor has any
    history). ``detectors`` holds each detector's own calibrated score in [0, 1].
    """

    sensor_id: str
    time: datetime
    value: float
    score: float
    is_anomaly: bool
    threshold: float
    expected: float | None
    lower: float | None
    upper: float | None
    detectors: dict[str, float]
    warm: bool


@dataclass(frozen=True, slots=True)
class ForecastPoint:
    """One step of a forecast with its 80 % and 95 % prediction intervals."""

    time: datetime
    mean: float
    lower_80: float
    upper_80: float
    lower_95: float
    upper_95: float
