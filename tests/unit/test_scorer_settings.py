"""Scorer settings, shard partitioning and the alert row mapping (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from core.wire import AnomalyEvent, new_event_id
from scorer.settings import ScorerSettings, parse_shard
from scorer.storage import event_row, in_shard

BASE: dict[str, Any] = {
    "database_url": "postgresql://x@127.0.0.1/db",
    "mqtt_url": "mqtt://127.0.0.1:1883",
}


@pytest.mark.parametrize(("spec", "want"), [("0/1", (0, 1)), ("2/3", (2, 3)), ("0/16", (0, 16))])
def test_parse_shard(spec: str, want: tuple[int, int]) -> None:
    assert parse_shard(spec) == want


@pytest.mark.parametrize("spec", ["", "1", "1/1", "-1/2", "a/b", "0/0", "1/2/3", "3/2"])
def test_parse_shard_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="shard"):
        parse_shard(spec)


def test_settings_defaults_and_overrides() -> None:
    s = ScorerSettings(**BASE)
    assert s.shard == (0, 1) and s.client_id == "sensorpipe-scorer-0of1"
    assert s.scorer_metrics_port == 9102
    s = ScorerSettings(
        **BASE, scorer_shard="1/4", alert_open_hits=2, alert_open_window=4, alert_instant_score=None
    )
    assert s.shard == (1, 4) and s.client_id == "sensorpipe-scorer-1of4"
    cfg = s.alert_config
    assert (cfg.open_hits, cfg.open_window, cfg.instant_score) == (2, 4, None)


def test_settings_reject_bad_shard_and_inconsistent_alerts() -> None:
    with pytest.raises(ValidationError, match="shard"):
        ScorerSettings(**BASE, scorer_shard="2/2")
    with pytest.raises(ValidationError, match="open_hits"):
        ScorerSettings(**BASE, alert_open_hits=6, alert_open_window=5)


def test_every_sensor_is_in_exactly_one_shard() -> None:
    ids = [f"plant-{i}.temp" for i in range(300)]
    for n in (1, 2, 3, 7):
        owners = [[i for i in range(n) if in_shard(sid, (i, n))] for sid in ids]
        assert all(len(o) == 1 for o in owners)
        if n > 1:  # and the split is not degenerate
            assert len({o[0] for o in owners}) == n


def test_event_row_stores_updates_as_open_and_keeps_opened_at() -> None:
    t0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    t1 = datetime(2026, 11, 25, 10, 5, tzinfo=UTC)
    common = {
        "event_id": new_event_id("s1", t0),
        "sensor_id": "s1",
        "value": 3.0,
        "score": 0.8,
        "severity": "warning",
        "model_version": "anomaly_detector:v1",
        "emitted_at": t1,
        "opened_at": t0,
        "detectors": {"forecast_residual": 0.9},
    }
    update = event_row(AnomalyEvent(**common, timestamp=t1, state="update"))
    assert update["state"] == "open" and update["opened_at"] == t0 and update["updated_at"] == t1
    assert update["resolved_at"] is None and update["detectors"].obj == {"forecast_residual": 0.9}
    resolved = event_row(AnomalyEvent(**common, timestamp=t1, state="resolved", resolved_at=t1))
    assert resolved["state"] == "resolved" and resolved["resolved_at"] == t1


def test_status_topic_component_is_per_shard_when_sharded() -> None:
    from scorer.mqtt import component_name

    assert component_name((0, 1)) == "scorer"
    assert {component_name((i, 3)) for i in range(3)} == {
        "scorer-0of3",
        "scorer-1of3",
        "scorer-2of3",
    }


def test_mqtt_protocol_choice_maps_to_a_clean_session() -> None:
    import aiomqtt

    from scorer.mqtt import _protocol

    assert _protocol("5") == {"protocol": aiomqtt.ProtocolVersion.V5, "clean_start": True}
    assert _protocol("3.1.1") == {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": True}
    assert ScorerSettings(**BASE, scorer_mqtt_protocol="3.1.1").scorer_mqtt_protocol == "3.1.1"
    with pytest.raises(ValidationError):
        ScorerSettings(**BASE, scorer_mqtt_protocol="4")
