"""Settings of the HTTP API (``API_*`` environment variables) on top of the shared ``Settings``."""

from __future__ import annotations

from pydantic import Field, field_validator

from core.settings import ScoringSettings


class ApiSettings(ScoringSettings):
    """Everything the API reads from the environment. Every limit here is enforced and counted."""

    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_workers: int = Field(1, ge=1, le=64)

    # Request limits: a body over the limit is refused with 413 before it is read whole.
    api_max_body_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    api_max_detect_items: int = Field(1000, ge=1, le=100_000)
    api_max_horizon: int = Field(288, ge=1, le=10_000)
    api_max_raw_range_days: float = Field(7.0, gt=0)
    api_max_bucket_range_days: float = Field(366.0, gt=0)
    api_max_report_range_days: float = Field(31.0, gt=0)
    api_max_page_size: int = Field(10_000, ge=1, le=100_000)
    api_max_aggregate_rows: int = Field(50_000, ge=1, le=1_000_000)

    # Comma-separated origins; empty means no CORS headers at all (the browser same-origin default).
    api_cors_origins: str = ""

    # How long an Idempotency-Key answer is replayed.
    api_idempotency_ttl_s: int = Field(24 * 3600, ge=60, le=30 * 86400)
    # Verified keys are cached this long: revocation takes effect within this many seconds.
    api_key_cache_s: float = Field(5.0, ge=0.0, le=300.0)
    # last_used_at is written in one statement per key at most this often.
    api_key_touch_interval_s: float = Field(30.0, ge=0.1, le=3600.0)

    # Scoring state: readings of history fed to a sensor's state on warm start, and how often the
    # background task feeds newly stored readings to the cached states.
    api_history_readings: int = Field(2000, ge=10, le=1_000_000)
    api_refresh_interval_s: float = Field(5.0, ge=0.05, le=3600.0)
    api_max_cached_sensors: int = Field(10_000, ge=1, le=1_000_000)

    api_db_pool_min: int = Field(2, ge=1, le=100)
    api_db_pool_max: int = Field(10, ge=1, le=200)
    api_db_pool_max_waiting: int = Field(256, ge=1, le=100_000)
    api_db_timeout_s: float = Field(5.0, gt=0, le=120)
    api_publish_timeout_s: float = Field(5.0, gt=0, le=120)
    api_mqtt_client_id: str = "sensorpipe-api"
    # Startup waits this long for the broker connection and the model load, then serves anyway.
    api_startup_grace_s: float = Field(5.0, ge=0.0, le=120.0)

    @field_validator("api_cors_origins")
    @classmethod
    def _origins(cls, v: str) -> str:
        for origin in (o.strip() for o in v.split(",") if o.strip()):
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"CORS origin {origin!r} must start with http:// or https://")
        return v

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.api_cors_origins.split(",") if o.strip()]
