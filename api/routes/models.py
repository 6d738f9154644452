"""``/api/v1/models``: which model versions this process serves, and reloading them (admin)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminKey, ReportsKey, StateDep
from api.schemas import AUTH_ERRORS, ModelInfo, ModelsOut, error_responses

router = APIRouter(prefix="/api/v1", tags=["models"])


def _out(state: StateDep) -> ModelsOut:
    ok, _ = state.models.status
    return ModelsOut(
        ready=ok,
        models=[ModelInfo(**m) for m in state.models.info()],
        cached_sensors=state.models.cached_sensors,
    )


@router.get("/models", response_model=ModelsOut, responses=error_responses(*AUTH_ERRORS))
async def list_models(key: ReportsKey, state: StateDep) -> ModelsOut:
    """Active versions, their metadata, and any load error."""
    return _out(state)


@router.post(
    "/models/reload", response_model=ModelsOut, responses=error_responses(*AUTH_ERRORS, 503)
)
async def reload_models(key: AdminKey, state: StateDep) -> ModelsOut:
    """Load the versions `models/active.json` names now. On failure the previous models keep
    serving and the answer is 503 with the reason."""
    await state.models.reload()
    return _out(state)
