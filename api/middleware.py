"""The request envelope, as one pure ASGI middleware (cheaper than ``BaseHTTPMiddleware``).

For every HTTP request it:

* takes a sane ``X-Request-ID`` or makes one, puts it in the log context (``core.logging``) and on
  the response;
* refuses a body over the limit with 413 — from ``Content-Length`` before reading anything, and by
  counting streamed bytes for chunked uploads;
* records request count and latency by route template (not raw path: bounded label cardinality);
* turns any exception nothing else handled into a JSON 500, logging the stack here and only here.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body
from api.metrics import ApiMetrics
from core.logging import correlated

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
INTERNAL_MESSAGE = "internal error; the request id identifies it in the logs"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; handled as a JSON 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    # Unmatched paths share one label, so a scanner cannot blow up the metric's cardinality.
    return path if isinstance(path, str) else "<unmatched>"


class RequestEnvelope:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: ApiMetrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        rid = incoming if incoming and _REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = [500]
        response_started = [False]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_started[0] = True
                status[0] = int(message["status"])
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            await send(message)

        with correlated(rid):
            try:
                if not self._length_ok(scope):
                    self.metrics.limit_hits.labels("body_bytes").inc()
                    await self._send_json(
                        send_with_id,
                        413,
                        "payload_too_large",
                        f"request body exceeds {self.max_body_bytes} bytes",
                    )
                    return
                await self.app(scope, self._counting(receive), send_with_id)
            except Exception:
                log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
                if not response_started[0]:
                    await self._send_json(send_with_id, 500, "internal_error", INTERNAL_MESSAGE)
            finally:
                self.metrics.observe(
                    scope.get("method", ""),
                    route_template(scope),
                    status[0],
                    time.perf_counter() - started,
                )

    def _length_ok(self, scope: Scope) -> bool:
        length = _header(scope, b"content-length")
        if length is None:
            return True
        try:
            return int(length) <= self.max_body_bytes
        except ValueError:
            return True  # the server rejects a malformed Content-Length before we see it

    def _counting(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.max_body_bytes

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    self.metrics.limit_hits.labels("body_bytes").inc()
                    raise BodyTooLarge(limit)
            return message

        return counted

    @staticmethod
    async def _send_json(send: Any, status: int, code: str, message: str) -> None:
        body = json.dumps(error_body(status, code, message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
