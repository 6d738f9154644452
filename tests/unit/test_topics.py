"""Topic builders and parsers: the only place topic strings are made."""

from __future__ import annotations

import pytest

from core.errors import WireError
from core.topics import (
    ALERTS_FILTER,
    READINGS_FILTER,
    SENML_FILTER,
    TopicKind,
    alerts_topic,
    check_sensor_id,
    is_valid_sensor_id,
    parse_topic,
    readings_topic,
    senml_topic,
    shard_of,
    shared,
    status_topic,
)


def test_builders() -> None:
    assert readings_topic("boiler-3.temp") == "sensors/boiler-3.temp/readings"
    assert senml_topic("boiler-3.temp") == "sensors/boiler-3.temp/senml"
    assert alerts_topic("boiler-3.temp") == "alerts/boiler-3.temp"
    assert status_topic("ingestor") == "sensorpipe/status/ingestor"
    assert shared("ingestors", READINGS_FILTER) == "$share/ingestors/sensors/+/readings"


@pytest.mark.parametrize("build", [readings_topic, senml_topic, alerts_topic])
@pytest.mark.parametrize("sid", ["a/b", "+", "#", "a\n", "", "x" * 65, "-a"])
def test_builders_refuse_ids_that_would_change_the_topic(build: object, sid: str) -> None:
    with pytest.raises(WireError) as exc:
        build(sid)  # type: ignore[operator]
    assert exc.value.reason == "invalid_sensor_id"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("sensors/boiler-3.temp/readings", (TopicKind.READINGS, "boiler-3.temp")),
        ("sensors/S_1/senml", (TopicKind.SENML, "S_1")),
        ("alerts/boiler-3.temp", (TopicKind.ALERTS, "boiler-3.temp")),
    ],
)
def test_parse_round_trips(topic: str, expected: tuple[TopicKind, str]) -> None:
    assert parse_topic(topic) == expected


@pytest.mark.parametrize(
    ("topic", "code"),
    [
        ("sensors/a/readings/extra", "unknown_topic"),
        ("sensors/a/other", "unknown_topic"),
        ("sensors/a", "unknown_topic"),
        ("devices/a/readings", "unknown_topic"),
        ("sensorpipe/status/ingestor", "unknown_topic"),
        ("", "unknown_topic"),
        ("sensors//readings", "invalid_sensor_id"),
        ("sensors/+/readings", "invalid_sensor_id"),
        ("sensors/#/senml", "invalid_sensor_id"),
        ("alerts/" + "x" * 65, "invalid_sensor_id"),
    ],
)
def test_parse_rejects(topic: str, code: str) -> None:
    with pytest.raises(WireError) as exc:
        parse_topic(topic)
    assert exc.value.reason == code


def test_filters_match_builders() -> None:
    for flt, build in (
        (READINGS_FILTER, readings_topic),
        (SENML_FILTER, senml_topic),
        (ALERTS_FILTER, alerts_topic),
    ):
        assert flt.replace("+", "x") == build("x")


@pytest.mark.parametrize(
    ("sid", "ok"),
    [
        ("a", True),
        ("A0_.-z", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("a\n", False),
        ("_a", False),
        ("a b", False),
        ("a:b", False),
    ],
)
def test_sensor_id_pattern(sid: str, ok: bool) -> None:
    assert is_valid_sensor_id(sid) is ok
    if ok:
        assert check_sensor_id(sid) == sid


def test_check_sensor_id_refuses_non_strings() -> None:
    with pytest.raises(WireError):
        check_sensor_id(5)  # type: ignore[arg-type]


def test_shard_of_is_stable_and_spreads() -> None:
    # crc32, not hash(): the same on every process (PYTHONHASHSEED) and every run.
    assert shard_of("boiler-3.temp", 4) == shard_of("boiler-3.temp", 4)
    assert shard_of("boiler-3.temp", 1000) == 199  # zlib.crc32(b"boiler-3.temp") % 1000
    counts = [0] * 4
    for i in range(400):
        counts[shard_of(f"sim-temp-{i:03d}", 4)] += 1
    assert all(60 < c < 140 for c in counts), counts
