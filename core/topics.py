"""MQTT topic names: every topic string in sensorpipe is built or parsed here."""

from __future__ import annotations

import re
from enum import StrEnum

from core.errors import WireError

SENSOR_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_SENSOR_ID_RE = re.compile(SENSOR_ID_PATTERN)

READINGS_FILTER = "sensors/+/readings"
SENML_FILTER = "sensors/+/senml"
ALERTS_FILTER = "alerts/+"
STATUS_FILTER = "sensorpipe/status/+"


class TopicKind(StrEnum):
    READINGS = "readings"
    SENML = "senml"
    ALERTS = "alerts"


def is_valid_sensor_id(sensor_id: str) -> bool:
    # fullmatch: `$` alone would accept a trailing newline.
    return _SENSOR_ID_RE.fullmatch(sensor_id) is not None


def check_sensor_id(sensor_id: str) -> str:
    if not isinstance(sensor_id, str) or not is_valid_sensor_id(sensor_id):
        raise WireError(
            "invalid_sensor_id", f"sensor id {sensor_id!r} does not match {SENSOR_ID_PATTERN}"
        )
    return sensor_id


def readings_topic(sensor_id: str) -> str:
    return f"sensors/{check_sensor_id(sensor_id)}/readings"


def senml_topic(sensor_id: str) -> str:
    return f"sensors/{check_sensor_id(sensor_id)}/senml"


def alerts_topic(sensor_id: str) -> str:
    return f"alerts/{check_sensor_id(sensor_id)}"


def status_topic(component: str) -> str:
    return f"sensorpipe/status/{component}"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT v5 shared subscription: the broker hands each message to one member of ``group``."""
    return f"$share/{group}/{topic_filter}"


def parse_topic(topic: str) -> tuple[TopicKind, str]:
    """Split a topic into its kind and sensor id, or raise ``WireError(unknown_topic)``."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "sensors" and parts[2] in ("readings", "senml"):
        return TopicKind(parts[2]), check_sensor_id(parts[1])
    if len(parts) == 2 and parts[0] == "alerts":
        return TopicKind.ALERTS, check_sensor_id(parts[1])
    raise WireError("unknown_topic", f"topic {topic!r} is not a sensorpipe data topic")


def shard_of(sensor_id: str, shards: int) -> int:
    """Stable shard of a sensor (same on every process and Python run, unlike ``hash``)."""
    import zlib

    return zlib.crc32(sensor_id.encode()) % shards
