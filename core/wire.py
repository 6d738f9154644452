"""The one wire format: every MQTT/HTTP payload is parsed and produced here.

Three inbound shapes share one validation path:

* a reading object ``{"sensor_id", "value", "timestamp", ...}`` on ``sensors/<id>/readings``;
* a JSON array of reading objects (a device's offline backlog) on the same topic;
* a SenML pack (RFC 8428) on ``sensors/<id>/senml``.

Whole-message problems (bad JSON, wrong top-level type, oversized) raise ``WireError``; problems
with one item of a batch are returned as ``ItemError`` beside the good readings, so one bad element
never costs the rest of a backlog.
"""

from __future__ import annotations

import functools
import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import WireError
from core.topics import TopicKind, check_sensor_id, is_valid_sensor_id

DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
DEFAULT_MAX_BATCH_ITEMS = 1000
DEFAULT_MAX_FUTURE_SKEW_S = 300.0
# RFC 8428 §4.5.3: SenML times below 2**28 are relative to "now".
SENML_RELATIVE_TIME_LIMIT = 2**28

Severity = Literal["warning", "critical"]
AlertState = Literal["open", "update", "resolved"]


class Reading(BaseModel):
    """One validated sensor reading; ``time`` is the device's timestamp, always UTC-aware."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    sensor_id: str
    time: datetime
    value: float
    sensor_type: str | None = None
    unit: str | None = None
    seq: int | None = None

    @field_validator("time")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is UTC:  # what every decoded reading carries: nothing to convert
            return v
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("naive datetime")
        return v.astimezone(UTC)


class AnomalyEvent(BaseModel):
    """An alert published on ``alerts/<sensor_id>`` and stored in ``anomaly_events``."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    event_id: str
    sensor_id: str
    timestamp: datetime
    value: float | None
    score: float = Field(ge=0.0, le=1.0)
    severity: Severity
    state: AlertState
    kind: str = "anomaly"
    expected: float | None = None
    lower: float | None = None
    upper: float | None = None
    detectors: dict[str, float] = Field(default_factory=dict)
    model_version: str
    emitted_at: datetime
    opened_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ItemError:
    """One rejected element of an otherwise readable message."""

    index: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Decoded:
    readings: list[Reading]
    errors: list[ItemError]


@dataclass(frozen=True, slots=True)
class Limits:
    """Validation limits; the live pipeline uses all of them, ``backtest`` disables the age ones."""

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS
    max_future_skew_s: float | None = DEFAULT_MAX_FUTURE_SKEW_S
    max_age_s: float | None = 180 * 86400.0


# --------------------------------------------------------------------------- decoding


def _reject_constant(name: str) -> Any:
    raise WireError("invalid_value", f"JSON constant {name} is not a finite number")


# One decoder for every payload: ``json.loads(..., parse_constant=...)`` builds a new decoder per
# call, a measurable share of decoding a one-reading message.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# The fast path, about 5 times quicker on a reading. It accepts a subset of what _DECODER accepts
# and returns the same objects for it (ints of any size stay ints); what it refuses (NaN and
# Infinity, numbers beyond a float, a BOM, escaped lone surrogates, invalid UTF-8, anything
# malformed) is decoded again by _DECODER, whose result or error is the contract's.
_FAST_DECODER = msgspec.json.Decoder()


def loads(raw: bytes | str, *, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Any:
    """Parse JSON strictly: no NaN/Infinity literals, bounded size, UTF-8 only."""
    if len(raw) > max_bytes:
        raise WireError("too_large", f"payload of {len(raw)} bytes exceeds {max_bytes}")
    try:
        return _FAST_DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return strict_loads(raw)


def strict_loads(raw: bytes | str) -> Any:
    """The reference decoder ``loads`` falls back to: its results and errors are the contract."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if text.startswith("\ufeff"):  # what json.loads refuses before decoding
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except WireError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError("malformed_json", str(exc)[:200]) from exc


def parse_value(v: Any) -> float:
    # bool is an int subclass in Python; a device sending true is a bug, not a 1.0.
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise WireError("invalid_value", f"value {v!r:.60} is not a number")
    f = float(v)
    if not math.isfinite(f):
        raise WireError("invalid_value", f"value {v!r:.60} is not finite")
    return f


def parse_timestamp(ts: Any, *, now: datetime, limits: Limits) -> datetime:
    """RFC 3339 with an offset, or epoch seconds; checked against the skew and age limits."""
    return check_time_window(_parse_time(ts), now=now, limits=limits)


def _parse_time(ts: Any) -> datetime:
    """RFC 3339 with an offset, or epoch seconds, as a UTC datetime (no window check)."""
    if isinstance(ts, str):
        return _parse_rfc3339(ts)
    if isinstance(ts, bool) or ts is None:
        raise WireError("invalid_timestamp", f"timestamp {ts!r} is not a time")
    if isinstance(ts, int | float):
        if not math.isfinite(ts):
            raise WireError("invalid_timestamp", "epoch timestamp is not finite")
        try:
            return datetime.fromtimestamp(float(ts), tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise WireError("invalid_timestamp", f"epoch {ts!r} out of range") from exc
    raise WireError("invalid_timestamp", f"timestamp of type {type(ts).__name__}")


def _parse_rfc3339(ts: str) -> datetime:
    # fromisoformat accepts more than RFC 3339 (week dates, no 'T' separators, ...); require the
    # date-time shape before handing over so "2026-11-25" or "12:00" are not half-accepted.
    # 19 = "YYYY-MM-DDTHH:MM:SS": shorter cannot be a date-time; exactly that is a naive one.
    if len(ts) < 19 or ts[4] != "-" or ts[10] not in "Tt ":
        raise WireError("invalid_timestamp", f"timestamp {ts[:40]!r} is not RFC 3339")
    # RFC 3339 §5.6 allows a lower-case "t"/"z" and a space separator, which fromisoformat does
    # not; the common shape (a "T", so isupper() means no lower case at all) is passed as it is.
    ts_iso = ts if ts[10] == "T" and ts.isupper() else ts[:10] + "T" + ts[11:].upper()
    try:
        t = datetime.fromisoformat(ts_iso)
    except ValueError as exc:
        raise WireError("invalid_timestamp", f"timestamp {ts[:40]!r} is not RFC 3339") from exc
    if t.tzinfo is UTC:  # "Z" or "+00:00": already what astimezone would return
        return t
    if t.tzinfo is None:
        raise WireError("naive_timestamp", f"timestamp {ts[:40]!r} has no UTC offset")
    try:
        return t.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-23:59 is past year 9999 in UTC
        raise WireError("invalid_timestamp", f"timestamp {ts[:40]!r} is out of range") from exc


def check_time_window(t: datetime, *, now: datetime, limits: Limits) -> datetime:
    latest, earliest = _window(now, limits.max_future_skew_s, limits.max_age_s)
    return _in_range(t, latest, earliest, limits)


def _in_range(
    t: datetime, latest: datetime | None, earliest: datetime | None, limits: Limits
) -> datetime:
    if latest is not None and t > latest:
        raise WireError(
            "future_timestamp", f"{t.isoformat()} is more than {limits.max_future_skew_s:g}s ahead"
        )
    if earliest is not None and t < earliest:
        raise WireError("too_old", f"{t.isoformat()} is older than retention")
    return t


@functools.lru_cache(maxsize=16)
def _window(
    now: datetime, max_future_skew_s: float | None, max_age_s: float | None
) -> tuple[datetime | None, datetime | None]:
    """The accepted time range at ``now``; cached, since a whole batch shares one ``now``."""
    latest = None if max_future_skew_s is None else now + timedelta(seconds=max_future_skew_s)
    earliest = None if max_age_s is None else now - timedelta(seconds=max_age_s)
    return latest, earliest


def _optional_str(obj: Mapping[str, Any], key: str, max_len: int = 64) -> str | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or len(v) > max_len:
        raise WireError("invalid_field", f"{key} must be a string of at most {max_len} characters")
    return v


def reading_from_obj(
    obj: Any, *, topic_sensor_id: str | None, now: datetime, limits: Limits
) -> Reading:
    """Validate one reading object. ``topic_sensor_id`` is authoritative when given."""
    return _ObjectReader(topic_sensor_id, now, limits).read(obj)


class _ObjectReader:
    """Validates the reading objects of one message.

    What all of them share is worked out once per message rather than per reading (a backlog
    array holds up to ``max_batch_items``): whether the topic's sensor id is valid, and the
    accepted time range. The checks, their order and their errors are those of the contract.
    """

    __slots__ = ("earliest", "latest", "limits", "topic_ok", "topic_sensor_id")

    def __init__(self, topic_sensor_id: str | None, now: datetime, limits: Limits) -> None:
        self.topic_sensor_id = topic_sensor_id
        self.topic_ok = topic_sensor_id is not None and is_valid_sensor_id(topic_sensor_id)
        self.limits = limits
        self.latest, self.earliest = _window(now, limits.max_future_skew_s, limits.max_age_s)

    def read(self, obj: Any) -> Reading:
        if not isinstance(obj, dict):
            raise WireError("not_object", f"expected a JSON object, got {type(obj).__name__}")
        topic_sid = self.topic_sensor_id
        sid = obj.get("sensor_id", topic_sid)
        if sid is None:
            raise WireError("missing_field", "sensor_id is required")
        if not isinstance(sid, str):
            raise WireError("invalid_sensor_id", f"sensor_id {sid!r:.60} is not a string")
        if not (self.topic_ok and sid == topic_sid):  # the topic's id was checked once
            check_sensor_id(sid)
        if topic_sid is not None and sid != topic_sid:
            raise WireError(
                "sensor_mismatch", f"payload sensor_id {sid!r} differs from topic {topic_sid!r}"
            )
        if "value" not in obj:
            raise WireError("missing_field", "value is required")
        if "timestamp" not in obj:
            raise WireError("missing_field", "timestamp is required")
        seq = obj.get("seq")
        if seq is not None and (
            isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63
        ):
            raise WireError("invalid_field", "seq must be a non-negative 64-bit integer")
        t = _in_range(_parse_time(obj["timestamp"]), self.latest, self.earliest, self.limits)
        value = parse_value(obj["value"])
        sensor_type = _optional_str(obj, "sensor_type")
        unit = _optional_str(obj, "unit", 32)
        return Reading(
            sensor_id=sid, time=t, value=value, sensor_type=sensor_type, unit=unit, seq=seq
        )


def decode_readings(
    raw: bytes | str,
    *,
    topic_sensor_id: str | None,
    now: datetime | None = None,
    limits: Limits = Limits(),
) -> Decoded:
    """Decode a reading object or an array of them (the ``readings`` topic / HTTP ingest)."""
    now = now or datetime.now(UTC)
    doc = loads(raw, max_bytes=limits.max_payload_bytes)
    reader = _ObjectReader(topic_sensor_id, now, limits)
    if isinstance(doc, dict):
        return Decoded([reader.read(doc)], [])
    if not isinstance(doc, list):
        raise WireError("not_object", f"expected an object or array, got {type(doc).__name__}")
    return _decode_items(doc, reader.read, limits)


def _decode_items(items: list[Any], one: Any, limits: Limits) -> Decoded:
    if not items:
        raise WireError("empty_batch", "array holds no readings")
    if len(items) > limits.max_batch_items:
        raise WireError("batch_too_large", f"{len(items)} items exceed {limits.max_batch_items}")
    readings: list[Reading] = []
    errors: list[ItemError] = []
    for i, obj in enumerate(items):
        try:
            readings.append(one(obj))
        except WireError as exc:
            errors.append(ItemError(i, exc.reason, exc.detail))
    return Decoded(readings, errors)


def decode_senml(
    raw: bytes | str,
    *,
    topic_sensor_id: str | None,
    now: datetime | None = None,
    limits: Limits = Limits(),
) -> Decoded:
    """Decode a SenML JSON pack, resolving base name/time/unit/value per RFC 8428 §4."""
    now = now or datetime.now(UTC)
    doc = loads(raw, max_bytes=limits.max_payload_bytes)
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        raise WireError("invalid_senml", "a SenML pack is a JSON array of records")
    resolver = _SenmlResolver(topic_sensor_id, now, limits)
    return _decode_items(doc, resolver.record, limits)


class _SenmlResolver:
    """Carries base fields forward: a base field applies to its record and all later ones."""

    def __init__(self, topic_sensor_id: str | None, now: datetime, limits: Limits) -> None:
        self.topic_sensor_id = topic_sensor_id
        self.now = now
        self.limits = limits
        self.bn = ""
        self.bt = 0.0
        self.bu: str | None = None
        self.bv = 0.0

    def record(self, rec: Any) -> Reading:
        if not isinstance(rec, dict):
            raise WireError("invalid_senml", "a SenML record is a JSON object")
        self._take_base(rec)
        if any(k in rec for k in ("vs", "vb", "vd")) and "v" not in rec:
            raise WireError("invalid_value", "only numeric SenML values (v) are supported")
        if "v" not in rec and "s" not in rec:
            raise WireError("missing_field", "SenML record has no value")
        value = self.bv + parse_value(rec["v"] if "v" in rec else rec["s"])
        name = self.bn + (self._str(rec, "n", "") or "")
        sid = name or self.topic_sensor_id
        if sid is None:
            raise WireError("missing_field", "SenML record has no name")
        if not isinstance(sid, str):
            raise WireError("invalid_sensor_id", "SenML name is not a string")
        check_sensor_id(sid)
        if self.topic_sensor_id is not None and sid != self.topic_sensor_id:
            raise WireError(
                "sensor_mismatch", f"SenML name {sid!r} differs from topic {self.topic_sensor_id!r}"
            )
        t = self.bt + self._num(rec, "t", 0.0)
        when = self.now.timestamp() + t if abs(t) < SENML_RELATIVE_TIME_LIMIT else t
        return Reading(
            sensor_id=sid,
            time=parse_timestamp(when, now=self.now, limits=self.limits),
            value=value,
            unit=self._str(rec, "u", None) or self.bu,
        )

    def _take_base(self, rec: Mapping[str, Any]) -> None:
        if "bver" in rec and (isinstance(rec["bver"], bool) or not isinstance(rec["bver"], int)):
            raise WireError("invalid_senml", "bver must be an integer")
        self.bn = self._str(rec, "bn", self.bn) or ""
        self.bt = self._num(rec, "bt", self.bt)
        self.bu = self._str(rec, "bu", self.bu)
        self.bv = self._num(rec, "bv", self.bv)

    @staticmethod
    def _str(rec: Mapping[str, Any], key: str, default: str | None) -> str | None:
        if key not in rec:
            return default
        v = rec[key]
        if not isinstance(v, str) or len(v) > 64:
            raise WireError("invalid_senml", f"SenML field {key} must be a short string")
        return v

    @staticmethod
    def _num(rec: Mapping[str, Any], key: str, default: float) -> float:
        if key not in rec:
            return default
        try:
            return parse_value(rec[key])
        except WireError as exc:
            raise WireError(
                "invalid_timestamp" if key in ("t", "bt") else "invalid_senml", exc.detail
            ) from exc


def decode(
    kind: TopicKind,
    raw: bytes | str,
    *,
    topic_sensor_id: str | None,
    now: datetime | None = None,
    limits: Limits = Limits(),
) -> Decoded:
    """Decode the payload of a data topic of the given kind."""
    if kind is TopicKind.READINGS:
        return decode_readings(raw, topic_sensor_id=topic_sensor_id, now=now, limits=limits)
    if kind is TopicKind.SENML:
        return decode_senml(raw, topic_sensor_id=topic_sensor_id, now=now, limits=limits)
    raise WireError("unknown_topic", f"{kind} carries no readings")


# --------------------------------------------------------------------------- encoding


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def reading_to_obj(r: Reading) -> dict[str, Any]:
    obj: dict[str, Any] = {"sensor_id": r.sensor_id, "value": r.value, "timestamp": _iso(r.time)}
    if r.sensor_type is not None:
        obj["sensor_type"] = r.sensor_type
    if r.unit is not None:
        obj["unit"] = r.unit
    if r.seq is not None:
        obj["seq"] = r.seq
    return obj


def encode_reading(r: Reading) -> bytes:
    return json.dumps(reading_to_obj(r), separators=(",", ":"), allow_nan=False).encode()


def encode_readings(rs: Sequence[Reading]) -> bytes:
    return json.dumps(
        [reading_to_obj(r) for r in rs], separators=(",", ":"), allow_nan=False
    ).encode()


def encode_senml(rs: Sequence[Reading]) -> bytes:
    """A SenML pack with a base name/time so repeated fields are sent once."""
    if not rs:
        raise ValueError("empty pack")
    base = rs[0]
    pack: list[dict[str, Any]] = []
    for i, r in enumerate(rs):
        rec: dict[str, Any] = {"v": r.value, "t": r.time.timestamp() - base.time.timestamp()}
        if i == 0:
            rec |= {"bn": base.sensor_id, "bt": base.time.timestamp()}
            if base.unit:
                rec["bu"] = base.unit
        if r.sensor_id != base.sensor_id:
            raise ValueError("a SenML pack here carries one sensor")
        if r.unit and r.unit != base.unit:
            rec["u"] = r.unit
        pack.append(rec)
    return json.dumps(pack, separators=(",", ":"), allow_nan=False).encode()


def encode_event(e: AnomalyEvent) -> bytes:
    return e.model_dump_json(exclude_none=False).encode()


def decode_event(raw: bytes | str, *, topic_sensor_id: str | None = None) -> AnomalyEvent:
    doc = loads(raw)
    if not isinstance(doc, dict):
        raise WireError("not_object", "an anomaly event is a JSON object")
    try:
        event = AnomalyEvent.model_validate(doc)
    except ValueError as exc:
        raise WireError("invalid_event", str(exc)[:300]) from exc
    check_sensor_id(event.sensor_id)
    if topic_sensor_id is not None and event.sensor_id != topic_sensor_id:
        raise WireError("sensor_mismatch", "event sensor_id differs from topic")
    if event.timestamp.tzinfo is None or event.emitted_at.tzinfo is None:
        raise WireError("naive_timestamp", "event times need an offset")
    return event


def new_event_id(sensor_id: str, opened_at: datetime) -> str:
    """A stable id for one incident: the same sensor and opening time give the same id, so a
    restarted scorer that re-derives an incident re-emits the same event rather than a new one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sensorpipe:{sensor_id}:{_iso(opened_at)}"))


def iter_reason_codes() -> Iterable[str]:
    """Every reason code this module can produce (documentation and metric pre-registration)."""
    return (
        "malformed_json",
        "not_object",
        "too_large",
        "invalid_sensor_id",
        "sensor_mismatch",
        "invalid_value",
        "invalid_timestamp",
        "naive_timestamp",
        "future_timestamp",
        "too_old",
        "missing_field",
        "invalid_field",
        "invalid_senml",
        "empty_batch",
        "batch_too_large",
        "unknown_topic",
        "invalid_event",
        "unknown_sensor",
    )
