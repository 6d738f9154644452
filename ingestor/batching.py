"""Batches: what the writer accumulates between two COMMITs, and how a message enters one.

A batch carries three things that must stay together until the COMMIT: the rows to store, the
rejects to record, and the acknowledgements to send afterwards. Nothing here does I/O, so the
policy (what is a reading, what is a reject, when a batch is full) is unit-tested directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.errors import WireError
from core.topics import TopicKind, parse_topic
from core.wire import Limits, decode

# (time, sensor_id, value, received_at): the column order of the staging COPY.
Row = tuple[datetime, str, float, datetime]


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One MQTT message as handed from the network thread to the writer."""

    topic: str
    payload: bytes
    mid: int
    # Which broker connection delivered it: an acknowledgement is only valid on that connection.
    generation: int
    received_at: float  # time.time() when paho handed it over
    qos: int = 1

    @property
    def kind(self) -> str:
        parts = self.topic.split("/")
        return parts[2] if len(parts) == 3 and parts[2] in ("readings", "senml") else "unknown"


@dataclass(frozen=True, slots=True)
class Reject:
    """One ``rejected_messages`` row; ``item_index`` is set for one bad element of an array."""

    received_at: datetime
    topic: str
    payload: bytes
    payload_bytes: int
    item_index: int | None
    reason: str
    detail: str


@dataclass(slots=True)
class Span:
    """The rows one message contributed, so a whole message can be rejected after decoding."""

    sensor_id: str
    start: int
    end: int
    message: InboundMessage


@dataclass(slots=True)
class SensorSeen:
    sensor_type: str | None
    unit: str | None
    last_seen: datetime


@dataclass(slots=True)
class Batch:
    """Rows, rejects and acknowledgements that commit (or fail) together."""

    rows: list[Row] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    sensors: dict[str, SensorSeen] = field(default_factory=dict)
    messages: list[InboundMessage] = field(default_factory=list)
    started: float = 0.0  # time.monotonic() of the first message

    def __len__(self) -> int:
        return len(self.messages)

    def is_full(self, max_rows: int) -> bool:
        return len(self.rows) + len(self.rejects) >= max_rows

    def age_s(self, now: float | None = None) -> float:
        if not self.messages:
            return 0.0
        return (time.monotonic() if now is None else now) - self.started

    def reject(
        self,
        msg: InboundMessage,
        reason: str,
        detail: str,
        *,
        cap: int,
        item_index: int | None = None,
    ) -> None:
        self.rejects.append(
            Reject(
                received_at=datetime.fromtimestamp(msg.received_at, UTC),
                topic=msg.topic[:512],
                payload=msg.payload[:cap],
                payload_bytes=len(msg.payload),
                item_index=item_index,
                reason=reason,
                detail=detail[:1000],
            )
        )

    def _register(self, msg: InboundMessage) -> None:
        if not self.messages:
            self.started = time.monotonic()
        self.messages.append(msg)


def add_message(
    batch: Batch, msg: InboundMessage, *, limits: Limits, reject_cap: int
) -> float | None:
    """Decode ``msg`` into ``batch``: its readings become rows, its faults become rejects.

    Returns the lag (receive time minus device time) of the newest reading, or ``None`` when the
    message held none. Raises only on a bug (the caller's per-message guard handles that).
    """
    batch._register(msg)
    received = datetime.fromtimestamp(msg.received_at, UTC)
    try:
        kind, sensor_id = parse_topic(msg.topic)
        if kind is TopicKind.ALERTS:
            # The scorer persists its own alerts; a stray subscription must not swallow them.
            raise WireError("unknown_topic", "alerts are stored by the scorer, not the ingestor")
        decoded = decode(kind, msg.payload, topic_sensor_id=sensor_id, limits=limits)
    except WireError as exc:
        batch.reject(msg, exc.reason, exc.detail, cap=reject_cap)
        return None
    for err in decoded.errors:
        batch.reject(msg, err.reason, err.detail, cap=reject_cap, item_index=err.index)
    if not decoded.readings:
        return None
    start = len(batch.rows)
    newest = decoded.readings[0].time
    rows = batch.rows
    for r in decoded.readings:
        rows.append((r.time, r.sensor_id, r.value, received))
        newest = max(newest, r.time)
    batch.spans.append(Span(sensor_id, start, len(rows), msg))
    first = decoded.readings[0]
    seen = batch.sensors.get(sensor_id)
    if seen is None:
        batch.sensors[sensor_id] = SensorSeen(first.sensor_type, first.unit, received)
    else:
        seen.sensor_type = seen.sensor_type or first.sensor_type
        seen.unit = seen.unit or first.unit
        seen.last_seen = max(seen.last_seen, received)
    return (received - newest).total_seconds()


def add_failure(batch: Batch, msg: InboundMessage, exc: BaseException, *, reject_cap: int) -> None:
    """Record a message whose handling raised unexpectedly, so it is kept (and acknowledged)
    instead of being redelivered forever. Rows it added before failing are taken back out."""
    if not batch.messages or batch.messages[-1] is not msg:
        batch._register(msg)
    if batch.spans and batch.spans[-1].message is msg:
        batch.spans.pop()
    del batch.rows[batch.spans[-1].end if batch.spans else 0 :]
    batch.reject(msg, "internal_error", f"{type(exc).__name__}: {exc}", cap=reject_cap)
