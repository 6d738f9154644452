"""``POST /api/v1/detect_anomaly``: score readings against each sensor's live context.

The readings are parsed by ``core.wire`` like ingested ones, then scored against the sensor's
cached state (warm-started from its recent history) *without* learning from them: a what-if check
must not change what the live state believes.
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request

from api.deps import PredictKey, StateDep
from api.errors import ApiError
from api.schemas import (
    AUTH_ERRORS,
    DetectOut,
    DetectResultOut,
    error_responses,
    readings_body_schema,
)
from core import wire

router = APIRouter(prefix="/api/v1", tags=["ml"])


@router.post(
    "/detect_anomaly",
    response_model=DetectOut,
    openapi_extra=readings_body_schema(1000),
    responses=error_responses(*AUTH_ERRORS, 404, 413, 503),
)
async def detect_anomaly(request: Request, key: PredictKey, state: StateDep) -> DetectOut:
    """Score one reading or a batch: `is_anomaly`, `score`, `threshold`, per-detector scores,
    the one-step forecast band, and the model version. Unknown sensors are 404."""
    settings = state.settings
    limits = dataclasses.replace(
        settings.limits,
        max_payload_bytes=settings.api_max_body_bytes,
        max_batch_items=settings.api_max_detect_items,
    )
    decoded = wire.decode_readings(await request.body(), topic_sensor_id=None, limits=limits)
    if decoded.errors:
        first = decoded.errors[0]
        raise ApiError(
            422,
            first.reason,
            f"item {first.index}: {first.detail}",
            errors=[
                {"index": e.index, "reason": e.reason, "detail": e.detail}
                for e in decoded.errors[:50]
            ],
        )
    scored = await state.models.detect(decoded.readings)
    return DetectOut(
        model_version=scored.model_version,
        results=[
            DetectResultOut(
                sensor_id=s.sensor_id,
                timestamp=s.time,
                value=s.value,
                is_anomaly=s.is_anomaly,
                score=s.score,
                threshold=s.threshold,
                expected=s.expected,
                lower=s.lower,
                upper=s.upper,
                detectors=dict(s.detectors),
                warm=s.warm,
            )
            for s in scored.scores
        ],
    )
