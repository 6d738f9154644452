"""The typed state the lifespan builds once and every request reads (``request.state.api``)."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from api.metrics import ApiMetrics
from api.models_cache import ModelsCache
from api.publisher import Publisher
from api.security import Authenticator
from api.settings import ApiSettings


@dataclass(frozen=True, slots=True)
class AppState:
    settings: ApiSettings
    pool: AsyncConnectionPool
    publisher: Publisher
    auth: Authenticator
    models: ModelsCache
    metrics: ApiMetrics
