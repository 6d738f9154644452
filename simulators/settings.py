"""Settings of ``sensorpipe simulate``: only the broker, so a simulator needs no database.

It deliberately does not extend ``core.settings.Settings``, whose ``DATABASE_URL`` is required:
a device simulator on another machine has no business knowing the database.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.settings import MqttTarget, parse_mqtt_url
from simulators.publisher import TlsOptions


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    mqtt_url: SecretStr | None = Field(None, description="mqtt://user:pass@host:1883")
    mqtt_tls_ca_file: str | None = None
    mqtt_tls_cert_file: str | None = None
    mqtt_tls_key_file: str | None = None
    mqtt_tls_insecure: bool = False
    mqtt_keepalive_s: int = Field(30, ge=5, le=3600)

    def target(self, override_url: str | None = None) -> MqttTarget | None:
        """The broker to publish to: ``--broker`` wins over ``MQTT_URL``; None if neither."""
        url = override_url or (self.mqtt_url.get_secret_value() if self.mqtt_url else None)
        return parse_mqtt_url(url) if url else None

    @property
    def tls(self) -> TlsOptions:
        return TlsOptions(
            self.mqtt_tls_ca_file,
            self.mqtt_tls_cert_file,
            self.mqtt_tls_key_file,
            self.mqtt_tls_insecure,
        )
