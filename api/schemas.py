"""Response and request models of the HTTP API (the OpenAPI schema is generated from these).

Readings sent to ``/data/ingest`` and ``/detect_anomaly`` are *parsed* by ``core.wire`` (one
parser for MQTT and HTTP); ``ReadingIn`` here only documents their shape in OpenAPI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.topics import SENSOR_ID_PATTERN


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Stable machine-readable code, e.g. `not_found`.")
    message: str
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error answers a route can give (every error has the same shape)."""
    descriptions = {
        400: "Bad request",
        401: "Missing, invalid or revoked API key",
        403: "The key lacks the required scope",
        404: "Not found",
        409: "Conflict",
        413: "Body or batch too large",
        422: "Invalid request",
        429: "Rate limit exceeded (see Retry-After)",
        503: "A dependency is unavailable",
    }
    return {s: {"model": ErrorResponse, "description": descriptions[s]} for s in statuses}


AUTH_ERRORS = (401, 403, 422, 429)


class ReadingIn(BaseModel):
    """One reading, as a device publishes it on ``sensors/<id>/readings``."""

    sensor_id: str = Field(pattern=SENSOR_ID_PATTERN, examples=["boiler-3.temp"])
    value: float = Field(description="A finite number.", examples=[71.25])
    timestamp: datetime | float = Field(
        description="RFC 3339 with an offset, or epoch seconds.",
        examples=["2026-11-25T10:00:00.250Z"],
    )
    sensor_type: str | None = Field(None, max_length=64)
    unit: str | None = Field(None, max_length=32, description="SenML unit name")
    seq: int | None = Field(None, ge=0, lt=2**63)


def readings_body_schema(max_items: int) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for "one reading or a non-empty array of them"."""
    one = ReadingIn.model_json_schema()
    one.pop("title", None)
    schema = {"oneOf": [one, {"type": "array", "items": one, "minItems": 1, "maxItems": max_items}]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# ----------------------------------------------------------------------------------- health


class HealthOut(BaseModel):
    status: Literal["ok"]


class DbHealthOut(BaseModel):
    status: Literal["ok"]
    latency_ms: float


class ReadyOut(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


# ----------------------------------------------------------------------------------- ingest


class ItemErrorOut(BaseModel):
    index: int | None = Field(description="Position in the batch; null for the whole body.")
    reason: str
    detail: str


class IngestOut(BaseModel):
    accepted: int
    rejected: int
    errors: list[ItemErrorOut]


# --------------------------------------------------------------------------------------- ml


class PredictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sensor_id: str = Field(pattern=SENSOR_ID_PATTERN, examples=["boiler-3.temp"])
    horizon: int = Field(12, ge=1, description="Steps ahead, at the sensor's reporting interval.")


class ForecastPointOut(BaseModel):
    timestamp: datetime
    mean: float
    lower_80: float
    upper_80: float
    lower_95: float
    upper_95: float


class PredictOut(BaseModel):
    sensor_id: str
    model_version: str
    horizon: int
    interval_s: float | None = Field(description="Spacing of the points.")
    points: list[ForecastPointOut]


class DetectResultOut(BaseModel):
    sensor_id: str
    timestamp: datetime
    value: float
    is_anomaly: bool
    score: float
    threshold: float
    expected: float | None
    lower: float | None
    upper: float | None
    detectors: dict[str, float]
    warm: bool = Field(description="False while the sensor has too little history to judge.")


class DetectOut(BaseModel):
    model_version: str
    results: list[DetectResultOut]


# ---------------------------------------------------------------------------------- sensors


class SensorOut(BaseModel):
    sensor_id: str
    device_id: str | None
    sensor_type: str | None
    unit: str | None
    location: str | None
    description: str | None
    valid_min: float | None
    valid_max: float | None
    expected_interval_s: float | None
    created_at: datetime
    last_seen_at: datetime | None
    last_reading_time: datetime | None
    last_reading_value: float | None


class SensorDetailOut(SensorOut):
    open_anomalies: int


class SensorPage(BaseModel):
    items: list[SensorOut]
    next_cursor: str | None


class RawPoint(BaseModel):
    time: datetime
    value: float


class BucketPoint(BaseModel):
    time: datetime = Field(description="Start of the bucket.")
    n: int
    mean: float
    min: float
    max: float
    stddev: float


class ReadingsPage(BaseModel):
    sensor_id: str
    bucket: str
    start: datetime
    end: datetime
    items: list[RawPoint] | list[BucketPoint]
    next_cursor: str | None


# -------------------------------------------------------------------------------- anomalies


class AnomalyOut(BaseModel):
    event_id: str
    sensor_id: str
    kind: Literal["anomaly", "deadman"]
    state: Literal["open", "resolved"]
    severity: Literal["warning", "critical"]
    score: float
    value: float | None
    expected: float | None
    lower: float | None
    upper: float | None
    detectors: dict[str, float]
    model_version: str
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    emitted_at: datetime


class AnomalyPage(BaseModel):
    items: list[AnomalyOut]
    next_cursor: str | None


# ---------------------------------------------------------------------------------- reports


class SensorSummary(BaseModel):
    sensor_id: str
    unit: str | None
    count: int
    min: float | None
    mean: float | None
    max: float | None
    p95: float | None
    stddev: float | None
    first_time: datetime | None
    last_time: datetime | None
    expected_interval_s: float | None
    expected_count: int | None = Field(description="Readings the expected interval implies.")
    completeness: float | None = Field(description="count / expected_count, capped at 1.")
    gaps: int = Field(description="Silences longer than twice the expected interval.")
    max_gap_s: float | None
    anomalies_warning: int
    anomalies_critical: int
    anomalies_deadman: int


class SummaryReport(BaseModel):
    start: datetime
    end: datetime
    sensors: list[SensorSummary]


class AggregateRow(BaseModel):
    sensor_id: str
    time: datetime
    n: int
    mean: float
    min: float
    max: float
    stddev: float


class AggregatesReport(BaseModel):
    start: datetime
    end: datetime
    bucket: str
    rows: list[AggregateRow]


# ----------------------------------------------------------------------------------- models


class ModelInfo(BaseModel):
    name: str
    version: int | None
    tag: str | None
    loaded: bool
    error: str | None
    meta: dict[str, Any]


class ModelsOut(BaseModel):
    ready: bool
    models: list[ModelInfo]
    cached_sensors: int
