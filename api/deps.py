"""FastAPI dependencies as ``Annotated`` aliases: the app state, the database pool, settings, and
the authenticated API key with a required scope.

Routes (and the dashboard router) declare what they need in their signature::

    @router.get("/things")
    async def things(key: Annotated[ApiKey, Depends(RequireScope("reports:read"))],
                     pool: PoolDep) -> ...

or use the ready-made aliases ``ReportsKey``, ``IngestKey``, ``PredictKey``, ``AdminKey``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from psycopg_pool import AsyncConnectionPool

from api.security import SCOPES, ApiKey
from api.settings import ApiSettings
from api.state import AppState

# Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool,
# which would cost two thread hand-offs per request for what is an attribute lookup.

API_KEY_HEADER = "X-API-Key"
# auto_error=False: a missing key is our JSON 401, not FastAPI's bare 403.
_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="An API key from `sensorpipe keys create`."
)


async def get_state(request: Request) -> AppState:
    state: AppState = request.state.api
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_pool(state: StateDep) -> AsyncConnectionPool:
    return state.pool


async def get_settings(state: StateDep) -> ApiSettings:
    return state.settings


PoolDep = Annotated[AsyncConnectionPool, Depends(get_pool)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


class RequireScope:
    """Dependency: the caller's key must carry ``scope`` (or ``admin``) and be within its rate
    limit. Answers 401 (missing/invalid/revoked key), 403 (scope) or 429 (rate, with
    ``Retry-After``). The key is also left on ``request.state.api_key``."""

    def __init__(self, scope: str) -> None:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        self.scope = scope

    async def __call__(
        self,
        request: Request,
        state: StateDep,
        presented: Annotated[str | None, Security(_api_key_scheme)] = None,
    ) -> ApiKey:
        key = await state.auth.authenticate(presented)
        state.auth.authorize(key, self.scope)
        request.state.api_key = key
        return key


IngestKey = Annotated[ApiKey, Depends(RequireScope("data:ingest"))]
ReportsKey = Annotated[ApiKey, Depends(RequireScope("reports:read"))]
PredictKey = Annotated[ApiKey, Depends(RequireScope("ml:predict"))]
AdminKey = Annotated[ApiKey, Depends(RequireScope("admin"))]
