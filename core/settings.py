"""Settings from the environment (pydantic-settings). Built in ``main()``, never at import time.

Every variable is listed in ``.env.example``. Components extend ``Settings`` with their own fields
in their own package; ``all_settings_classes()`` in ``sensorpipe`` collects them for the
compose/env checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError
from core.wire import Limits


@dataclass(frozen=True, slots=True)
class MqttTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_mqtt_url(url: str) -> MqttTarget:
    """``mqtt://user:pass@host:1883`` or ``mqtts://...`` (TLS, default port 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(f"MQTT_URL scheme must be mqtt:// or mqtts://, got {parts.scheme!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    if not parts.hostname:
        raise ConfigError("MQTT_URL has no host")
    return MqttTarget(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


class CommonSettings(BaseSettings):
    """Settings every command has: logging."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    log_level: str = "INFO"
    log_format: str = Field("json", pattern="^(json|text)$")

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.upper()
        if v not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return v


class DatabaseSettings(CommonSettings):
    """Settings of commands that only talk to the database (``migrate``, ``keys``)."""

    database_url: SecretStr = Field(description="postgresql://user:pass@host:5432/db")

    @property
    def dsn(self) -> str:
        """libpq connection string (SQLAlchemy-style ``postgresql+psycopg://`` is accepted too)."""
        url = self.database_url.get_secret_value()
        return url.replace("postgresql+psycopg://", "postgresql://", 1)


class Settings(DatabaseSettings):
    """Settings every pipeline component shares: database, broker, validation limits."""

    mqtt_url: SecretStr = Field(description="mqtt://user:pass@host:1883 (mqtts:// for TLS)")
    mqtt_tls_ca_file: str | None = None
    mqtt_tls_cert_file: str | None = None
    mqtt_tls_key_file: str | None = None
    mqtt_tls_insecure: bool = False
    mqtt_keepalive_s: int = Field(30, ge=5, le=3600)

    max_payload_bytes: int = Field(256 * 1024, ge=256, le=16 * 1024 * 1024)
    max_batch_items: int = Field(1000, ge=1, le=100_000)
    max_future_skew_s: float = Field(300.0, ge=0)
    retention_days: int = Field(180, ge=1)
    # Pre-registration: when true, readings of sensors absent from `sensors` are rejected.
    require_registered_sensors: bool = False
    models_dir: str = "models"

    @property
    def mqtt(self) -> MqttTarget:
        return parse_mqtt_url(self.mqtt_url.get_secret_value())

    @property
    def limits(self) -> Limits:
        return Limits(
            max_payload_bytes=self.max_payload_bytes,
            max_batch_items=self.max_batch_items,
            max_future_skew_s=self.max_future_skew_s,
            max_age_s=self.retention_days * 86400.0,
        )
