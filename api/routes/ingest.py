"""``POST /api/v1/data/ingest``: readings over HTTP, published to the broker like a device's.

The body is decoded by ``core.wire`` (the same parser as MQTT), good readings are published to
``sensors/<id>/readings`` with QoS 1 — so the ingestor stores and the scorer scores them exactly
as if a device had sent them — and the answer is 202 once the broker has acknowledged them.
Rejected items are kept in ``rejected_messages`` (source ``http``) like MQTT rejects.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from api import queries
from api.deps import IngestKey, StateDep
from api.idempotency import HEADER, IdempotencyStore, body_sha256, check_key
from api.schemas import AUTH_ERRORS, IngestOut, ItemErrorOut, error_responses, readings_body_schema
from api.state import AppState
from core import wire
from core.errors import WireError
from core.topics import readings_topic
from core.wire import ItemError, Reading

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["ingest"])

INGEST_TOPIC = "http:/api/v1/data/ingest"
# One MQTT message per sensor per request, split so a message stays well under the ingestor's
# payload limit whatever the HTTP batch size.
_MAX_READINGS_PER_MESSAGE = 500
_MAX_REJECT_BYTES = 4096


def _messages(readings: list[Reading]) -> list[tuple[str, bytes]]:
    by_sensor: dict[str, list[Reading]] = defaultdict(list)
    for r in readings:
        by_sensor[r.sensor_id].append(r)
    out: list[tuple[str, bytes]] = []
    for sensor_id, rs in by_sensor.items():
        topic = readings_topic(sensor_id)
        for i in range(0, len(rs), _MAX_READINGS_PER_MESSAGE):
            chunk = rs[i : i + _MAX_READINGS_PER_MESSAGE]
            out.append(
                (
                    topic,
                    wire.encode_reading(chunk[0])
                    if len(chunk) == 1
                    else wire.encode_readings(chunk),
                )
            )
    return out


def _item_payloads(raw: bytes, errors: list[ItemError], max_bytes: int) -> list[bytes]:
    """Each rejected item's own JSON (only computed when there are rejects)."""
    doc = wire.loads(raw, max_bytes=max_bytes)
    items = doc if isinstance(doc, list) else [doc]
    return [
        json.dumps(items[e.index], allow_nan=False).encode()[:_MAX_REJECT_BYTES] for e in errors
    ]


async def _record_rejects(state: AppState, rows: list[tuple[Any, ...]]) -> None:
    async with state.pool.connection() as conn, conn.cursor() as cur:
        await cur.executemany(queries.INSERT_REJECTED, rows)


async def _ingest(state: AppState, raw: bytes) -> dict[str, Any]:
    settings = state.settings
    limits = dataclasses.replace(settings.limits, max_payload_bytes=settings.api_max_body_bytes)
    try:
        decoded = wire.decode_readings(raw, topic_sensor_id=None, limits=limits)
    except WireError as exc:
        state.metrics.readings_rejected.labels(exc.reason).inc()
        if exc.reason == "batch_too_large":
            state.metrics.limit_hits.labels("batch_items").inc()
        await _record_rejects(
            state, [(INGEST_TOPIC, raw[:_MAX_REJECT_BYTES], len(raw), None, exc.reason, exc.detail)]
        )
        raise
    if decoded.readings:
        await state.publisher.publish_many(_messages(decoded.readings))
    if decoded.errors:
        payloads = _item_payloads(raw, decoded.errors, limits.max_payload_bytes)
        await _record_rejects(
            state,
            [
                (INGEST_TOPIC, p, len(p), e.index, e.reason, e.detail)
                for e, p in zip(decoded.errors, payloads, strict=True)
            ],
        )
        for e in decoded.errors:
            state.metrics.readings_rejected.labels(e.reason).inc()
    state.metrics.readings_accepted.inc(len(decoded.readings))
    return IngestOut(
        accepted=len(decoded.readings),
        rejected=len(decoded.errors),
        errors=[
            ItemErrorOut(index=e.index, reason=e.reason, detail=e.detail) for e in decoded.errors
        ],
    ).model_dump()


@router.post(
    "/data/ingest",
    status_code=202,
    response_model=IngestOut,
    openapi_extra=readings_body_schema(1000),
    responses=error_responses(*AUTH_ERRORS, 409, 413, 503),
    summary="Ingest one reading or a batch",
)
async def ingest(
    request: Request,
    key: IngestKey,
    state: StateDep,
    idempotency_key: Annotated[str | None, Header(alias=HEADER)] = None,
) -> JSONResponse:
    """Validate and publish readings. 202 with accepted/rejected counts and per-item errors once
    the broker has acknowledged the accepted ones. With an `Idempotency-Key`, a replay returns
    the first answer (`Idempotent-Replayed: true`) and publishes nothing."""
    raw = await request.body()
    if idempotency_key is None:
        return JSONResponse(await _ingest(state, raw), status_code=202)
    check_key(idempotency_key)
    store = IdempotencyStore(state.pool, state.settings.api_idempotency_ttl_s)
    sha = body_sha256(raw)
    replay = await store.claim(key.id, idempotency_key, sha)
    if replay is not None:
        state.metrics.idempotent_replays.inc()
        return JSONResponse(
            replay.body, status_code=replay.status_code, headers={"Idempotent-Replayed": "true"}
        )
    try:
        body = await _ingest(state, raw)
    except BaseException:
        await store.release(key.id, idempotency_key)
        raise
    await store.complete(key.id, idempotency_key, 202, body)
    return JSONResponse(body, status_code=202)
