"""Hypothesis properties of the wire format: round-trips, and no input escapes as a crash."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.errors import WireError
from core.topics import SENSOR_ID_PATTERN, is_valid_sensor_id
from core.wire import (
    AnomalyEvent,
    Reading,
    decode_event,
    decode_readings,
    decode_senml,
    encode_event,
    encode_reading,
    encode_readings,
    encode_senml,
    iter_reason_codes,
    loads,
    new_event_id,
    strict_loads,
)

NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
REASONS = frozenset(iter_reason_codes())

sensor_ids = st.from_regex(SENSOR_ID_PATTERN, fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False)
# Inside the accepted window: up to 179 days old, up to the 300 s future skew.
times = st.integers(-179 * 86400 * 10**6, 300 * 10**6).map(
    lambda us: NOW + timedelta(microseconds=us)
)
short_text = st.text(max_size=32)
# No per-example deadline: the CI machine is shared, and a slow example is not a wrong one.
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def readings(draw: st.DrawFn, sensor_id: str | None = None) -> Reading:
    return Reading(
        sensor_id=sensor_id or draw(sensor_ids),
        time=draw(times),
        value=draw(finite),
        sensor_type=draw(st.none() | st.text(max_size=64)),
        unit=draw(st.none() | short_text),
        seq=draw(st.none() | st.integers(0, 2**63 - 1)),
    )


@st.composite
def one_sensor_batches(draw: st.DrawFn) -> list[Reading]:
    sid = draw(sensor_ids)
    return draw(st.lists(readings(sid), min_size=1, max_size=20))


@relaxed
@given(readings())
def test_reading_round_trip(r: Reading) -> None:
    d = decode_readings(encode_reading(r), topic_sensor_id=r.sensor_id, now=NOW)
    assert d.errors == []
    assert d.readings == [r]


@relaxed
@given(one_sensor_batches())
def test_array_round_trip_keeps_order_and_every_item(rs: list[Reading]) -> None:
    d = decode_readings(encode_readings(rs), topic_sensor_id=rs[0].sensor_id, now=NOW)
    assert d.errors == []
    assert d.readings == rs


@relaxed
@given(one_sensor_batches(), st.none() | st.sampled_from(["Cel", "%RH", "W", "m/s2"]))
def test_senml_round_trip(rs: list[Reading], unit: str | None) -> None:
    rs = [r.model_copy(update={"unit": unit}) for r in rs]
    d = decode_senml(encode_senml(rs), topic_sensor_id=rs[0].sensor_id, now=NOW)
    assert d.errors == []
    # SenML carries name, time, value and unit (type and seq have no SenML field).
    assert [(r.sensor_id, r.time, r.value, r.unit) for r in d.readings] == [
        (r.sensor_id, r.time, r.value, r.unit) for r in rs
    ]


@relaxed
@given(st.lists(st.booleans(), min_size=1, max_size=30), st.data())
def test_batch_items_fail_independently(good: list[bool], data: st.DataObject) -> None:
    sid = "dev-1"
    items: list[dict[str, Any]] = []
    for ok in good:
        r = data.draw(readings(sid))
        obj = json.loads(encode_reading(r))
        if not ok:
            obj["value"] = data.draw(st.sampled_from(["1", True, None, [1], {}]))
        items.append(obj)
    d = decode_readings(json.dumps(items), topic_sensor_id=sid, now=NOW)
    assert len(d.readings) == sum(good)
    assert [e.index for e in d.errors] == [i for i, ok in enumerate(good) if not ok]
    assert {e.reason for e in d.errors} <= {"invalid_value"}


events = st.builds(
    lambda sid, t, v, score, sev, state, dets, emitted: AnomalyEvent(
        event_id=new_event_id(sid, t),
        sensor_id=sid,
        timestamp=t,
        value=v,
        score=score,
        severity=sev,
        state=state,
        detectors=dets,
        model_version="anomaly_detector:v1",
        emitted_at=emitted,
        opened_at=t,
    ),
    sensor_ids,
    times,
    st.none() | finite,
    st.floats(0.0, 1.0),
    st.sampled_from(["warning", "critical"]),
    st.sampled_from(["open", "update", "resolved"]),
    st.dictionaries(st.text(min_size=1, max_size=20), finite, max_size=4),
    times,
)


@relaxed
@given(events)
def test_event_round_trip(e: AnomalyEvent) -> None:
    assert decode_event(encode_event(e), topic_sensor_id=e.sensor_id) == e


json_values = st.recursive(
    st.none() | st.booleans() | finite | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    "sensor_id",
                    "value",
                    "timestamp",
                    "seq",
                    "unit",
                    "bn",
                    "bt",
                    "n",
                    "v",
                    "t",
                    "u",
                    "x",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


def _only_wire_errors(fn: Any, raw: bytes | str) -> None:
    try:
        fn(raw)
    except WireError as exc:
        assert exc.reason in REASONS


@relaxed
@given(st.binary(max_size=300) | json_values.map(json.dumps))
@example(b'{"sensor_id": "a", "value": 1, "timestamp": "9999-12-31T23:59:59-23:59"}')
@example(b'[{"bn": "a", "bt": 1e308, "v": 1}]')
@example(b'[{"n": "a", "t": -1e308, "v": 1e308, "bv": 1e308}]')
def test_no_input_escapes_as_anything_but_a_wire_error(raw: bytes | str) -> None:
    _only_wire_errors(lambda b: decode_readings(b, topic_sensor_id="a", now=NOW), raw)
    _only_wire_errors(lambda b: decode_readings(b, topic_sensor_id=None, now=NOW), raw)
    _only_wire_errors(lambda b: decode_senml(b, topic_sensor_id="a", now=NOW), raw)
    _only_wire_errors(lambda b: decode_senml(b, topic_sensor_id=None, now=NOW), raw)
    _only_wire_errors(decode_event, raw)


def _outcome(fn: Any, raw: bytes | str) -> tuple[str, Any]:
    try:
        doc = fn(raw)
    except WireError as exc:
        return "error", exc.reason
    # repr tells 1 from 1.0 and -0.0 from 0.0, which == does not.
    return "ok", repr(doc)


# Text that is nearly JSON: the places where decoders tend to differ.
_edges = st.sampled_from(
    ["NaN", "-Infinity", "1e999", "-0", "-0.0", "123456789012345678901234567890", "5e-324",
     '"\\ud800"', '"\\u00e9"', "\ufeff1", "1 ", " 1", "01", "1.", ".5", "[1,]", "\x0c1",
     '"a\tb"', '"\x7f"', "true", "nul", "{}", "[]"]
)  # fmt: skip


@relaxed
@given(
    st.binary(max_size=300)
    | json_values.map(json.dumps)
    | st.lists(_edges | json_values.map(json.dumps), min_size=1, max_size=4).map(
        lambda parts: "[" + ",".join(parts) + "]"
    )
    | _edges
    | _edges.map(str.encode)
)
@example(b'"\xed\xa0\x80"')  # a surrogate encoded as UTF-8: invalid UTF-8
@example("[" * 5000 + "]" * 5000)
def test_fast_json_path_agrees_with_the_reference_decoder(raw: bytes | str) -> None:
    assert _outcome(loads, raw) == _outcome(strict_loads, raw)


@relaxed
@given(st.text(max_size=80).filter(lambda s: not is_valid_sensor_id(s)))
def test_any_invalid_sensor_id_is_rejected(sid: str) -> None:
    raw = json.dumps({"sensor_id": sid, "value": 1.0, "timestamp": NOW.isoformat()})
    try:
        decode_readings(raw, topic_sensor_id=None, now=NOW)
    except WireError as exc:
        assert exc.reason == "invalid_sensor_id"
    else:
        raise AssertionError(f"{sid!r} was accepted")


@relaxed
@given(
    st.one_of(
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]),
        st.text(max_size=10).map(json.dumps),
        st.booleans().map(json.dumps),
        st.just("null"),
    )
)
def test_any_non_finite_or_non_numeric_value_is_invalid(literal: str) -> None:
    raw = '{"sensor_id": "a", "timestamp": "2026-11-25T09:00:00Z", "value": ' + literal + "}"
    try:
        decode_readings(raw, topic_sensor_id="a", now=NOW)
    except WireError as exc:
        assert exc.reason == "invalid_value"
    else:
        raise AssertionError(f"value {literal} was accepted")


@relaxed
@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),  # noqa: DTZ001 - naive on purpose
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    )
)
def test_any_naive_timestamp_is_rejected(t: datetime) -> None:
    raw = json.dumps({"sensor_id": "a", "value": 1, "timestamp": t.isoformat()})
    try:
        decode_readings(raw, topic_sensor_id="a", now=NOW)
    except WireError as exc:
        assert exc.reason == "naive_timestamp"
    else:
        raise AssertionError(f"naive {t} was accepted")


@relaxed
@given(st.floats(300.001, 1e9))
def test_beyond_the_skew_is_future(ahead_s: float) -> None:
    ts = NOW.timestamp() + ahead_s
    raw = json.dumps({"sensor_id": "a", "value": 1, "timestamp": ts})
    try:
        decode_readings(raw, topic_sensor_id="a", now=NOW)
    except WireError as exc:
        assert exc.reason == "future_timestamp"
    else:
        raise AssertionError(f"{ahead_s}s ahead was accepted")
    assert math.isfinite(ts)
