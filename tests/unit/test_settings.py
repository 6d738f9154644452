"""Settings from the environment: MQTT_URL parsing, required secrets, limits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from core.settings import MqttTarget, Settings, load_settings, parse_mqtt_url

DB = "postgresql://app:s3cret@db.example:5432/sensorpipe"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "MQTT_URL",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "MAX_FUTURE_SKEW_S",
        "RETENTION_DAYS",
        "MQTT_TLS_CA_FILE",
        "MQTT_TLS_INSECURE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", MqttTarget("127.0.0.1", 1883, None, None, False)),
        ("mqtt://broker", MqttTarget("broker", 1883, None, None, False)),
        ("mqtts://broker", MqttTarget("broker", 8883, None, None, True)),
        ("ssl://broker:9999", MqttTarget("broker", 9999, None, None, True)),
        ("tcp://u@broker", MqttTarget("broker", 1883, "u", None, False)),
        ("mqtt://user:pass@broker:1884", MqttTarget("broker", 1884, "user", "pass", False)),
        # Reserved characters in credentials arrive percent-encoded.
        (
            "mqtts://dev%40site:p%3Aw%2Fd%40@broker",
            MqttTarget("broker", 8883, "dev@site", "p:w/d@", True),
        ),
        ("mqtt://[::1]:1883", MqttTarget("::1", 1883, None, None, False)),
    ],
)
def test_parse_mqtt_url(url: str, expected: MqttTarget) -> None:
    assert parse_mqtt_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://broker:1883", "broker:1883", "mqtt://", "mqtt://:1883", ""]
)
def test_parse_mqtt_url_rejects(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_mqtt_url(url)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://app:s3cret@db:5432/sp")
    monkeypatch.setenv("MQTT_URL", "mqtts://dev:pw@broker")
    monkeypatch.setenv("MQTT_TLS_CA_FILE", "/etc/ca.pem")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("RETENTION_DAYS", "30")
    s = Settings()
    assert s.dsn == "postgresql://app:s3cret@db:5432/sp"
    assert s.mqtt == MqttTarget("broker", 8883, "dev", "pw", True)
    assert s.mqtt_tls_ca_file == "/etc/ca.pem"
    assert s.log_level == "DEBUG"
    assert s.limits.max_age_s == 30 * 86400.0
    assert s.limits.max_future_skew_s == 300.0


def test_secrets_are_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", DB)
    monkeypatch.setenv("MQTT_URL", "mqtt://user:topsecret@broker")
    s = Settings()
    assert "s3cret" not in repr(s) and "topsecret" not in repr(s)
    assert "s3cret" not in str(s.model_dump())


@pytest.mark.parametrize("missing", ["DATABASE_URL", "MQTT_URL"])
def test_missing_required_setting_is_an_error(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    env = {"DATABASE_URL": DB, "MQTT_URL": "mqtt://broker"}
    del env[missing]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError) as exc:
        Settings()
    assert missing.lower() in str(exc.value)


def test_load_settings_exits_2_naming_the_missing_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MQTT_URL", "mqtt://broker")
    with pytest.raises(SystemExit) as exc:
        load_settings(Settings)
    assert exc.value.code == 2
    assert "DATABASE_URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOG_LEVEL", "LOUD"),
        ("LOG_FORMAT", "xml"),
        ("MAX_FUTURE_SKEW_S", "-1"),
        ("RETENTION_DAYS", "0"),
    ],
)
def test_invalid_values_are_errors(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv("DATABASE_URL", DB)
    monkeypatch.setenv("MQTT_URL", "mqtt://broker")
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_constructor_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", DB)
    monkeypatch.setenv("MQTT_URL", "mqtt://broker")
    s = Settings(mqtt_url="mqtt://other:1999")
    assert s.mqtt.host == "other" and s.mqtt.port == 1999


def test_simulator_settings_need_no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    from simulators.settings import SimulatorSettings

    assert SimulatorSettings().target() is None
    monkeypatch.setenv("MQTT_URL", "mqtt://u:p@broker:1885")
    s = SimulatorSettings()
    assert s.target() == MqttTarget("broker", 1885, "u", "p", False)
    assert s.target("mqtts://cli-wins") == MqttTarget("cli-wins", 8883, None, None, True)
