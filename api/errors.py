"""The one table from errors to HTTP answers, and the handlers that make every error clear JSON.

Every error body has the same shape::

    {"error": {"code": "not_found", "message": "...", "request_id": "...", ...extra}}

FastAPI's own 422, Starlette's HTTPException (404/405 of the router) and any unexpected exception
all go through here, so no answer ever carries a stack trace or a framework-specific shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import Error as PsycopgError
from psycopg_pool import PoolTimeout, TooManyRequests
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import (
    BrokerError,
    InsufficientDataError,
    ModelError,
    NotFoundError,
    PipelineError,
    StorageError,
    WireError,
)
from core.logging import correlation_id

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer decided by the API itself (auth, limits, conflicts), raised anywhere below."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra


@dataclass(frozen=True, slots=True)
class Mapped:
    status: int
    code: str


# Domain error → HTTP status and code. The first matching class wins, so subclasses come first.
ERROR_TABLE: tuple[tuple[type[BaseException], Mapped], ...] = (
    (NotFoundError, Mapped(404, "not_found")),
    (InsufficientDataError, Mapped(422, "insufficient_data")),
    (WireError, Mapped(422, "invalid_payload")),
    (ModelError, Mapped(503, "model_unavailable")),
    (BrokerError, Mapped(503, "broker_unavailable")),
    (StorageError, Mapped(503, "database_unavailable")),
    (TooManyRequests, Mapped(503, "database_busy")),
    (PoolTimeout, Mapped(503, "database_unavailable")),
    (PsycopgError, Mapped(503, "database_unavailable")),
)

# WireError reasons that are about size, not shape: 413, like an oversized body.
_TOO_LARGE_REASONS = frozenset({"too_large", "batch_too_large"})


def error_body(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "request_id": correlation_id.get(), **extra}
    }


def error_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        error_body(status, code, message, **extra), status_code=status, headers=dict(headers or {})
    )


def map_exception(exc: BaseException) -> tuple[int, str, str, dict[str, Any]]:
    """(status, code, message, extra) for a domain or library error; 500 for anything else."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message, exc.extra
    if isinstance(exc, WireError):
        status = 413 if exc.reason in _TOO_LARGE_REASONS else 422
        return status, exc.reason, exc.detail, {}
    for cls, mapped in ERROR_TABLE:
        if isinstance(exc, cls):
            return mapped.status, mapped.code, _message(exc, mapped), _extra(exc)
    return 500, "internal_error", "internal error; the request id identifies it in the logs", {}


def _message(exc: BaseException, mapped: Mapped) -> str:
    if isinstance(exc, ModelError):
        return f"model unavailable ({exc.reason}): {exc.detail}"
    if isinstance(exc, PipelineError) and not isinstance(exc, StorageError):
        return str(exc)
    # Library messages can carry host names and SQL: say what failed, not how.
    return {
        "database_busy": "the database is busy, retry shortly",
        "database_unavailable": "the database is unavailable",
        "broker_unavailable": "the message broker is unavailable",
    }.get(mapped.code, str(exc))


def _extra(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, InsufficientDataError):
        return {"needed": exc.needed, "available": exc.available}
    if isinstance(exc, ModelError):
        return {"reason": exc.reason}
    return {}


# Codes that read better than the status phrase (and match the ones raised elsewhere).
_STATUS_CODES = {413: "payload_too_large", 422: "validation_error"}


def _status_code_name(status: int) -> str:
    if status in _STATUS_CODES:
        return _STATUS_CODES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    status, code, message, extra = map_exception(exc)
    headers = exc.headers if isinstance(exc, ApiError) else None
    if status >= 500:
        log.warning(
            "%s %s answered %d %s: %s", request.method, request.url.path, status, code, message
        )
    return error_response(status, code, message, headers=headers, **extra)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # registered for this type only
        raise exc
    detail = exc.detail if isinstance(exc.detail, str) else _status_code_name(exc.status_code)
    return error_response(
        exc.status_code, _status_code_name(exc.status_code), detail, headers=exc.headers
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):  # registered for this type only
        raise exc
    # The offending input is not echoed back: it may be large, and it may be a secret.
    details = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()[:20]
    ]
    return error_response(422, "validation_error", "the request is not valid", details=details)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through ``map_exception``. Unexpected exceptions are caught by the
    request middleware (``api.middleware``), which logs them with their stack and answers 500."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(PipelineError, _api_error)
    app.add_exception_handler(TooManyRequests, _api_error)
    app.add_exception_handler(PoolTimeout, _api_error)
    app.add_exception_handler(PsycopgError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
