"""``sensorpipe acl``: rendering device ACL entries from the sensor registry (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import ConfigError
from sensorpipe.commands.acl import render_acl

T = datetime(2026, 1, 1, tzinfo=UTC)


def test_groups_sensors_by_device_sorted() -> None:
    text = render_acl(
        [("pump-2", "pump-2.flow"), ("boiler-3", "boiler-3.temp"), ("boiler-3", "boiler-3.rpm")],
        generated_at=T,
    )
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body == [
        "user boiler-3",
        "topic write sensors/boiler-3.rpm/#",
        "topic write sensors/boiler-3.temp/#",
        "user pump-2",
        "topic write sensors/pump-2.flow/#",
    ]


def test_an_empty_registry_renders_only_the_header() -> None:
    assert [line for line in render_acl([], generated_at=T).splitlines() if line] == [
        "# Rendered by `sensorpipe acl` from the sensor registry at 2026-01-01T00:00:00+00:00.",
        "# Do not edit: re-render after changing sensors.device_id, then restart the broker.",
    ]


@pytest.mark.parametrize("device_id", ["ingestor", "alerts", "api", "healthcheck"])
def test_refuses_device_ids_of_pipeline_users(device_id: str) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        render_acl([(device_id, "x.temp")])


@pytest.mark.parametrize("device_id", ["a/b", "+", "dev#1", "with space", ""])
def test_refuses_device_ids_that_are_not_user_names(device_id: str) -> None:
    with pytest.raises(ConfigError, match="not a valid MQTT user name"):
        render_acl([(device_id, "x.temp")])
