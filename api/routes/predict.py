"""``POST /api/v1/predict``: a forecast from the sensor's cached, background-updated state.

Nothing is fitted on the request path: the per-sensor forecaster state is warm-started from the
database once and then fed newly stored readings by a background task (``api.models_cache``).
"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PredictKey, StateDep
from api.errors import ApiError
from api.schemas import AUTH_ERRORS, ForecastPointOut, PredictIn, PredictOut, error_responses

router = APIRouter(prefix="/api/v1", tags=["ml"])


@router.post(
    "/predict", response_model=PredictOut, responses=error_responses(*AUTH_ERRORS, 404, 503)
)
async def predict(body: PredictIn, key: PredictKey, state: StateDep) -> PredictOut:
    """Forecast `horizon` steps ahead with 80 % and 95 % prediction intervals.

    404 for an unknown sensor; 422 with `needed`/`available` when the sensor has too little
    history; 503 when the models are not loaded."""
    max_horizon = state.settings.api_max_horizon
    if body.horizon > max_horizon:
        state.metrics.limit_hits.labels("horizon").inc()
        raise ApiError(
            422,
            "horizon_too_large",
            f"horizon {body.horizon} exceeds the maximum of {max_horizon}",
            max_horizon=max_horizon,
        )
    forecast = await state.models.forecast(body.sensor_id, body.horizon)
    return PredictOut(
        sensor_id=body.sensor_id,
        model_version=forecast.model_version,
        horizon=body.horizon,
        interval_s=forecast.interval_s,
        points=[
            ForecastPointOut(
                timestamp=p.time,
                mean=p.mean,
                lower_80=p.lower_80,
                upper_80=p.upper_80,
                lower_95=p.lower_95,
                upper_95=p.upper_95,
            )
            for p in forecast.points
        ],
    )
