"""Settings from the environment (pydantic-settings). Built in ``main()``, never at import time.

Every variable is listed in ``.env.example``. Components extend ``Settings`` (or
``ScoringSettings``) with their own fields in their own package; ``tests/unit/test_compose.py``
checks each command's settings class against ``compose.yaml`` and ``.env.example``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError
from core.logging import configure_logging
from core.wire import Limits

if TYPE_CHECKING:
    from core.scoring.config import ScoringConfig


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


class ScoringSettings(Settings):
    """Settings of the services that score readings: the scorer (streaming scores, forecasts and
    alerts) and the API (``/predict``, ``/detect_anomaly``). Both read the scoring library's
    tunables from the one variable ``SCORING``, so they never disagree about a reading.
    """

    # A JSON object of ScoringConfig overrides, e.g. {"profile_level_tau_s": 86400}. Kept as
    # text (not a dict field) so .env and compose carry it verbatim; checked at startup.
    scoring: str = Field("{}", description="JSON object of core.scoring.ScoringConfig overrides")

    @field_validator("scoring")
    @classmethod
    def _scoring(cls, v: str) -> str:
        _scoring_config(_scoring_overrides(v))  # ValueError naming the key
        return v

    @property
    def scoring_overrides(self) -> dict[str, Any]:
        """The overrides as given (for the startup log)."""
        return _scoring_overrides(self.scoring)

    @property
    def scoring_summary(self) -> str:
        """One line for each scoring service's startup log (the scorer's and the API's alike)."""
        overrides = self.scoring_overrides
        return json.dumps(overrides) if overrides else "none, the library's defaults"

    @property
    def scoring_config(self) -> ScoringConfig:
        """The library's defaults with the overrides applied."""
        return _scoring_config(self.scoring_overrides)


def _scoring_overrides(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")  # an empty SCORING= in .env means no overrides
    except json.JSONDecodeError as exc:
        raise ValueError(f"SCORING is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError('SCORING must be a JSON object, e.g. {"threshold": 0.6}')
    return value


def _scoring_config(overrides: dict[str, Any]) -> ScoringConfig:
    # Imported here, not at the top: core.scoring loads numba (half a second), and the ingestor,
    # simulator and CLI import this module without ever scoring.
    from core.scoring.config import ScoringConfig, apply_overrides

    return apply_overrides(ScoringConfig(), overrides)


S = TypeVar("S", bound=CommonSettings)


def load_settings(cls: type[S], component: str | None = None, **overrides: object) -> S:
    """Settings from the environment (plus command-line overrides), logging configured; on an
    invalid or missing setting, exit 2 with one line per variable instead of a traceback (for
    every entry point: ``sensorpipe <command>`` and ``python -m <service>`` alike)."""
    try:
        settings = cls(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        # Before logging is configured, and for a person at a terminal: plain stderr.
        sys.stderr.write(
            "sensorpipe: invalid settings (environment variables):\n" + "\n".join(lines) + "\n"
        )
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format, component)
    return settings
