"""The wire contract of DESIGN.md: every accepted shape decodes, every bad input gets its reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import WireError
from core.topics import TopicKind
from core.wire import (
    AnomalyEvent,
    Limits,
    Reading,
    decode,
    decode_event,
    decode_readings,
    decode_senml,
    encode_event,
    encode_reading,
    encode_readings,
    encode_senml,
    iter_reason_codes,
    new_event_id,
)

NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
SID = "boiler-3.temp"


def reading_json(**fields: object) -> str:
    doc: dict[str, object] = {"sensor_id": SID, "value": 71.25, "timestamp": "2026-11-25T09:59:00Z"}
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...})


def one(raw: str | bytes, topic: str | None = SID, **kw: object) -> Reading:
    d = decode_readings(raw, topic_sensor_id=topic, now=NOW, **kw)  # type: ignore[arg-type]
    assert d.errors == []
    assert len(d.readings) == 1
    return d.readings[0]


def reason(raw: str | bytes, topic: str | None = SID, **kw: object) -> str:
    with pytest.raises(WireError) as exc:
        decode_readings(raw, topic_sensor_id=topic, now=NOW, **kw)  # type: ignore[arg-type]
    assert exc.value.reason in set(iter_reason_codes())
    return exc.value.reason


# --------------------------------------------------------------------------- readings


def test_design_example_reading_decodes() -> None:
    raw = (
        '{"sensor_id": "boiler-3.temp", "sensor_type": "temperature", "value": 71.25, '
        '"unit": "Cel", "timestamp": "2026-11-25T10:00:00.250Z", "seq": 81234}'
    )
    r = one(raw)
    assert r == Reading(
        sensor_id=SID,
        time=datetime(2026, 11, 25, 10, 0, 0, 250000, tzinfo=UTC),
        value=71.25,
        sensor_type="temperature",
        unit="Cel",
        seq=81234,
    )


def test_offsets_are_normalised_to_utc() -> None:
    r = one(reading_json(timestamp="2026-11-25T11:59:00+02:00"))
    assert r.time == datetime(2026, 11, 25, 9, 59, tzinfo=UTC)
    assert r.time.tzinfo is UTC


@pytest.mark.parametrize(
    "ts",
    [
        "2026-11-25t09:59:00z",
        "2026-11-25 09:59:00Z",
        "2026-11-25T09:59:00z",  # upper-case "T", lower-case "z": not the common shape
        "2026-11-25T09:59:00+00:00",
        "2026-11-25T09:59:00-00:00",
    ],
)
def test_rfc3339_variants_accepted(ts: str) -> None:
    r = one(reading_json(timestamp=ts))
    assert r.time == datetime(2026, 11, 25, 9, 59, tzinfo=UTC)
    assert r.time.tzinfo is UTC


def test_every_item_of_an_array_is_checked_against_an_invalid_topic_id() -> None:
    # The topic's id is validated once per message: an item that repeats an invalid one must
    # still be rejected, item by item.
    bad = "bad id"
    items = [{"sensor_id": bad, "value": 1.0, "timestamp": "2026-11-25T09:00:00Z"}] * 2
    d = decode_readings(json.dumps(items), topic_sensor_id=bad, now=NOW)
    assert d.readings == []
    assert [(e.index, e.reason) for e in d.errors] == [
        (0, "invalid_sensor_id"),
        (1, "invalid_sensor_id"),
    ]


def test_every_item_of_an_array_is_checked_against_the_time_window() -> None:
    items = [
        {"value": 1.0, "timestamp": "2026-11-25T09:59:00Z"},
        {"value": 2.0, "timestamp": "2026-11-25T10:06:00Z"},  # beyond the 5 min skew
        {"value": 3.0, "timestamp": "2020-01-01T00:00:00Z"},  # older than retention
        {"value": 4.0, "timestamp": "2026-11-25T10:00:00Z"},
    ]
    d = decode_readings(json.dumps(items), topic_sensor_id=SID, now=NOW)
    assert [r.value for r in d.readings] == [1.0, 4.0]
    assert [(e.index, e.reason) for e in d.errors] == [(1, "future_timestamp"), (2, "too_old")]


@pytest.mark.parametrize("epoch", [1795600740, 1795600740.5])
def test_epoch_seconds_accepted(epoch: float) -> None:
    r = one(reading_json(timestamp=epoch))
    assert r.time.timestamp() == pytest.approx(epoch)


def test_sensor_id_may_come_from_topic_and_extra_fields_are_ignored() -> None:
    r = one(reading_json(sensor_id=..., firmware="1.2", extra={"a": 1}))
    assert r.sensor_id == SID


def test_integer_values_become_floats() -> None:
    assert one(reading_json(value=7)).value == 7.0


def test_array_keeps_good_items_and_reports_bad_ones() -> None:
    items = [
        {"sensor_id": SID, "value": 1.0, "timestamp": "2026-11-25T09:00:00Z"},
        {"sensor_id": SID, "value": "x", "timestamp": "2026-11-25T09:00:01Z"},
        {"sensor_id": "other", "value": 2.0, "timestamp": "2026-11-25T09:00:02Z"},
        {"sensor_id": SID, "value": 3.0, "timestamp": "2026-11-25T09:00:03"},
        7,
    ]
    d = decode_readings(json.dumps(items), topic_sensor_id=SID, now=NOW)
    assert [r.value for r in d.readings] == [1.0]
    assert [(e.index, e.reason) for e in d.errors] == [
        (1, "invalid_value"),
        (2, "sensor_mismatch"),
        (3, "naive_timestamp"),
        (4, "not_object"),
    ]


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"value": 1,}', b"\xff\xfe", "{'sensor_id': 'a'}", b"[1, 2", b"nul"],
)
def test_malformed_json(raw: bytes | str) -> None:
    assert reason(raw) == "malformed_json"


def test_deep_nesting_is_malformed_not_a_crash() -> None:
    assert reason("[" * 100_000 + "]" * 100_000, limits=Limits(max_payload_bytes=10**6)) in (
        "malformed_json",
        "not_object",
    )


@pytest.mark.parametrize("raw", ["42", '"reading"', "null", "true", "1.5"])
def test_non_objects(raw: str) -> None:
    assert reason(raw) == "not_object"


@pytest.mark.parametrize(
    "literal",
    ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", '"71.2"', "true", "false", "null"],
)
def test_non_finite_or_non_numeric_values(literal: str) -> None:
    raw = '{"sensor_id": "boiler-3.temp", "timestamp": "2026-11-25T09:59:00Z", "value": %s}'
    assert reason(raw % literal) == "invalid_value"


@pytest.mark.parametrize("value", [[1.0], {"v": 1}])
def test_container_values(value: object) -> None:
    assert reason(reading_json(value=value)) == "invalid_value"


@pytest.mark.parametrize(
    ("ts", "code"),
    [
        ("2026-11-25T09:59:00", "naive_timestamp"),
        ("2026-11-25T09:59:00.123", "naive_timestamp"),
        ("2026-11-25", "invalid_timestamp"),
        ("09:59:00Z", "invalid_timestamp"),
        ("yesterday at noon, UTC", "invalid_timestamp"),
        ("2026-13-45T09:59:00Z", "invalid_timestamp"),
        ("9999-12-31T23:59:59-23:59", "invalid_timestamp"),
        ("0001-01-01T00:00:00+01:00", "invalid_timestamp"),
        (True, "invalid_timestamp"),
        (None, "invalid_timestamp"),
        ([2026, 11, 25], "invalid_timestamp"),
        (1e300, "invalid_timestamp"),
        ("2026-11-25T10:05:01Z", "future_timestamp"),
        ("2027-01-01T00:00:00Z", "future_timestamp"),
        ("2026-05-28T09:59:59Z", "too_old"),
        (0, "too_old"),
    ],
)
def test_bad_timestamps(ts: object, code: str) -> None:
    assert reason(reading_json(timestamp=ts)) == code


def test_skew_and_age_limits_are_configurable_and_can_be_disabled() -> None:
    ahead = reading_json(timestamp="2026-11-25T10:04:59Z")
    assert one(ahead).time == datetime(2026, 11, 25, 10, 4, 59, tzinfo=UTC)
    assert reason(ahead, limits=Limits(max_future_skew_s=60)) == "future_timestamp"
    old = reading_json(timestamp="2020-01-01T00:00:00Z")
    assert reason(old) == "too_old"
    backtest = Limits(max_future_skew_s=None, max_age_s=None)
    assert one(old, limits=backtest).time.year == 2020


def test_boundary_of_the_future_skew_is_inclusive() -> None:
    edge = (NOW + timedelta(seconds=300)).isoformat()
    assert one(reading_json(timestamp=edge)).time == NOW + timedelta(seconds=300)


def test_oversized_payload() -> None:
    raw = reading_json(sensor_type="x" * 40, pad="y" * 300)
    assert reason(raw, limits=Limits(max_payload_bytes=256)) == "too_large"
    assert reason(b" " * (256 * 1024 + 1)) == "too_large"


def test_batch_limits() -> None:
    assert reason("[]") == "empty_batch"
    item = json.loads(reading_json())
    assert reason(json.dumps([item] * 3), limits=Limits(max_batch_items=2)) == "batch_too_large"


@pytest.mark.parametrize(
    "sid",
    [
        "a/b",
        "a+",
        "#",
        "temp\n",
        "te\nmp",
        "x" * 65,
        "",
        "-leading-dash",
        ".hidden",
        "space id",
        "ünïcode",
        "a\x00b",
    ],
)
def test_bad_sensor_ids(sid: str) -> None:
    assert reason(reading_json(sensor_id=sid), topic=None) == "invalid_sensor_id"


@pytest.mark.parametrize("sid", [42, None, True, ["a"]])
def test_sensor_id_that_is_not_a_string(sid: object) -> None:
    raw = reading_json(sensor_id=sid)
    assert reason(raw, topic=None) in ("invalid_sensor_id", "missing_field")


def test_longest_valid_sensor_id() -> None:
    sid = "a" * 64
    assert one(reading_json(sensor_id=sid), topic=sid).sensor_id == sid


def test_topic_is_authoritative() -> None:
    assert reason(reading_json(sensor_id="boiler-3.pressure")) == "sensor_mismatch"


@pytest.mark.parametrize("missing", ["value", "timestamp"])
def test_missing_fields(missing: str) -> None:
    doc = json.loads(reading_json())
    del doc[missing]
    assert reason(json.dumps(doc)) == "missing_field"
    del doc["sensor_id"]
    assert reason(json.dumps(doc), topic=None) == "missing_field"


@pytest.mark.parametrize(
    "fields",
    [
        {"seq": -1},
        {"seq": 2**63},
        {"seq": 1.5},
        {"seq": True},
        {"seq": "7"},
        {"sensor_type": 5},
        {"sensor_type": "t" * 65},
        {"unit": ["Cel"]},
        {"unit": "u" * 33},
    ],
)
def test_bad_optional_fields(fields: dict[str, object]) -> None:
    assert reason(reading_json(**fields)) == "invalid_field"


# --------------------------------------------------------------------------- SenML (RFC 8428)


def senml(records: list[dict[str, object]], topic: str | None = SID) -> list[Reading]:
    d = decode_senml(json.dumps(records), topic_sensor_id=topic, now=NOW)
    assert d.errors == []
    return d.readings


def test_senml_base_fields_resolve_per_rfc8428() -> None:
    bt = NOW.timestamp() - 60
    rs = senml(
        [
            {"bn": "boiler-3.", "bt": bt, "bu": "Cel", "bv": 10.0, "n": "temp", "v": 61.25},
            {"n": "temp", "t": 10, "v": 62.0},
            {"n": "temp", "t": 20, "v": 63.5, "u": "K"},
        ]
    )
    assert [r.sensor_id for r in rs] == [SID] * 3
    assert [r.value for r in rs] == [71.25, 72.0, 73.5]
    assert [r.time for r in rs] == [
        NOW - timedelta(seconds=60),
        NOW - timedelta(seconds=50),
        NOW - timedelta(seconds=40),
    ]
    assert [r.unit for r in rs] == ["Cel", "Cel", "K"]


def test_senml_base_fields_change_mid_pack() -> None:
    rs = senml(
        [
            {"bn": SID, "bt": NOW.timestamp(), "v": 1.0},
            {"bt": NOW.timestamp() - 100, "t": 1, "v": 2.0},
            {"t": 2, "v": 3.0},
        ]
    )
    assert [r.time for r in rs] == [
        NOW,
        NOW - timedelta(seconds=99),
        NOW - timedelta(seconds=98),
    ]


def test_senml_relative_times_are_relative_to_now() -> None:
    rs = senml([{"bn": SID, "v": 1.0}, {"t": -30, "v": 2.0}, {"t": 0.5, "v": 3.0}])
    assert [r.time for r in rs] == [
        NOW,
        NOW - timedelta(seconds=30),
        NOW + timedelta(seconds=0.5),
    ]


def test_senml_time_just_below_2_pow_28_is_relative() -> None:
    # 2**28 - 1 seconds after now is ~8.5 years in the future: relative, hence rejected as future.
    d = decode_senml(json.dumps([{"n": SID, "t": 2**28 - 1, "v": 1}]), topic_sensor_id=SID, now=NOW)
    assert [e.reason for e in d.errors] == ["future_timestamp"]
    # 2**28 is absolute: 1978-07-04, older than retention.
    d = decode_senml(json.dumps([{"n": SID, "t": 2**28, "v": 1}]), topic_sensor_id=SID, now=NOW)
    assert [e.reason for e in d.errors] == ["too_old"]


def test_senml_name_from_topic_when_absent_and_single_record_object() -> None:
    d = decode_senml('{"v": 4.5}', topic_sensor_id=SID, now=NOW)
    assert [(r.sensor_id, r.value, r.time) for r in d.readings] == [(SID, 4.5, NOW)]


@pytest.mark.parametrize(
    ("records", "code"),
    [
        ([{"n": "boiler-3.pressure", "v": 1}], "sensor_mismatch"),
        ([{"bn": "boiler-3/", "n": "temp", "v": 1}], "invalid_sensor_id"),
        ([{"n": SID, "vs": "on"}], "invalid_value"),
        ([{"n": SID, "vb": True}], "invalid_value"),
        ([{"n": SID}], "missing_field"),
        ([{"n": SID, "v": "1"}], "invalid_value"),
        ([{"n": SID, "v": True}], "invalid_value"),
        ([{"n": SID, "v": 1, "t": "now"}], "invalid_timestamp"),
        ([{"n": SID, "v": 1, "bt": True}], "invalid_timestamp"),
        ([{"n": SID, "v": 1, "bver": "10"}], "invalid_senml"),
        ([{"n": 5, "v": 1}], "invalid_senml"),
        ([{"n": SID, "v": 1, "bu": 3}], "invalid_senml"),
        ([[SID, 1]], "invalid_senml"),
        ([{"n": SID, "v": 1, "t": 3600}], "future_timestamp"),
    ],
)
def test_senml_bad_records(records: list[object], code: str) -> None:
    d = decode_senml(json.dumps(records), topic_sensor_id=SID, now=NOW)
    assert d.readings == []
    assert [e.reason for e in d.errors] == [code]


@pytest.mark.parametrize(("raw", "code"), [("42", "invalid_senml"), ("[]", "empty_batch")])
def test_senml_bad_packs(raw: str, code: str) -> None:
    with pytest.raises(WireError) as exc:
        decode_senml(raw, topic_sensor_id=SID, now=NOW)
    assert exc.value.reason == code


def test_senml_nan_literal_is_rejected_whole() -> None:
    with pytest.raises(WireError) as exc:
        decode_senml('[{"n": "boiler-3.temp", "v": NaN}]', topic_sensor_id=SID, now=NOW)
    assert exc.value.reason == "invalid_value"


def test_senml_one_bad_record_does_not_cost_the_pack() -> None:
    raw = json.dumps(
        [{"bn": SID, "bt": NOW.timestamp(), "v": 1}, {"t": 1, "v": "x"}, {"t": 2, "v": 3}]
    )
    d = decode_senml(raw, topic_sensor_id=SID, now=NOW)
    assert [r.value for r in d.readings] == [1.0, 3.0]
    assert [(e.index, e.reason) for e in d.errors] == [(1, "invalid_value")]


# --------------------------------------------------------------------------- dispatch & encoding


def test_decode_dispatches_on_topic_kind() -> None:
    assert decode(TopicKind.READINGS, reading_json(), topic_sensor_id=SID, now=NOW).readings
    assert decode(TopicKind.SENML, '[{"v": 1}]', topic_sensor_id=SID, now=NOW).readings
    with pytest.raises(WireError) as exc:
        decode(TopicKind.ALERTS, "{}", topic_sensor_id=SID, now=NOW)
    assert exc.value.reason == "unknown_topic"


def sample_readings() -> list[Reading]:
    return [
        Reading(
            sensor_id=SID,
            time=NOW - timedelta(seconds=10 - i, microseconds=i * 1234),
            value=70.0 + i / 3,
            sensor_type="temperature",
            unit="Cel",
            seq=i,
        )
        for i in range(5)
    ]


def test_reading_and_array_round_trip() -> None:
    rs = sample_readings()
    assert one(encode_reading(rs[0])) == rs[0]
    assert decode_readings(encode_readings(rs), topic_sensor_id=SID, now=NOW).readings == rs


def test_senml_round_trip_keeps_name_time_value_unit() -> None:
    rs = sample_readings()
    got = decode_senml(encode_senml(rs), topic_sensor_id=SID, now=NOW).readings
    assert [(r.sensor_id, r.time, r.value, r.unit) for r in got] == [
        (r.sensor_id, r.time, r.value, r.unit) for r in rs
    ]


def test_encoders_refuse_what_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError):
        encode_senml([])
    other = sample_readings()[0].model_copy(update={"sensor_id": "other"})
    with pytest.raises(ValueError):
        encode_senml([*sample_readings(), other])
    with pytest.raises(ValueError):
        Reading(sensor_id=SID, time=NOW, value=float("nan"))
    with pytest.raises(ValueError):
        Reading(sensor_id=SID, time=NOW.replace(tzinfo=None), value=1.0)


def make_event(**kw: object) -> AnomalyEvent:
    fields: dict[str, object] = {
        "event_id": new_event_id(SID, NOW),
        "sensor_id": SID,
        "timestamp": NOW,
        "value": 93.1,
        "score": 0.97,
        "severity": "critical",
        "state": "open",
        "expected": 71.4,
        "lower": 68.9,
        "upper": 73.8,
        "detectors": {"forecast_residual": 0.99, "isolation_forest": 0.81},
        "model_version": "anomaly_detector:v3",
        "emitted_at": NOW + timedelta(milliseconds=5),
        "opened_at": NOW,
    }
    fields.update(kw)
    return AnomalyEvent.model_validate(fields)


def test_event_round_trip_and_stable_id() -> None:
    e = make_event()
    assert decode_event(encode_event(e), topic_sensor_id=SID) == e
    assert new_event_id(SID, NOW) == e.event_id
    assert new_event_id(SID, NOW + timedelta(microseconds=1)) != e.event_id
    assert new_event_id("other", NOW) != e.event_id


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda d: d.update(score=1.5), "invalid_event"),
        (lambda d: d.update(severity="panic"), "invalid_event"),
        (lambda d: d.pop("model_version"), "invalid_event"),
        (lambda d: d.update(timestamp="2026-11-25T10:00:00"), "naive_timestamp"),
        (lambda d: d.update(sensor_id="a/b"), "invalid_sensor_id"),
        (lambda d: d.update(sensor_id="other"), "sensor_mismatch"),
    ],
)
def test_bad_events(mutate: object, code: str) -> None:
    doc = json.loads(encode_event(make_event()))
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(WireError) as exc:
        decode_event(json.dumps(doc), topic_sensor_id=SID)
    assert exc.value.reason == code


@pytest.mark.parametrize("raw", ["[1]", '"event"', "{"])
def test_event_must_be_an_object(raw: str) -> None:
    with pytest.raises(WireError) as exc:
        decode_event(raw)
    assert exc.value.reason in ("not_object", "malformed_json")


def test_event_values_must_be_finite() -> None:
    doc = json.loads(encode_event(make_event()))
    raw = json.dumps(doc).replace('"value": 93.1', '"value": 1e999')
    with pytest.raises(WireError) as exc:
        decode_event(raw)
    assert exc.value.reason == "invalid_event"
