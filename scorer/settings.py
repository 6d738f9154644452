"""Settings of the scorer service (environment variables, see ``.env.example``)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from core.scoring.alerts import AlertConfig
from core.settings import ScoringSettings


def parse_shard(spec: str) -> tuple[int, int]:
    """``"i/N"`` → ``(i, N)`` with ``0 <= i < N``."""
    try:
        i_text, n_text = spec.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ValueError(f"shard must look like i/N (e.g. 0/2), got {spec!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {spec!r} needs 0 <= i < N")
    return i, n


class ScorerSettings(ScoringSettings):
    """The scorer's own knobs; field names carry a ``scorer_``/``alert_`` prefix so the variables
    read well beside the other components' in one environment."""

    scorer_shard: str = Field("0/1", description="this process's shard i/N of the sensors")
    scorer_client_id: str | None = Field(None, description="MQTT client id (default from shard)")
    scorer_metrics_host: str = "127.0.0.1"
    scorer_metrics_port: int = Field(9102, ge=0, le=65535)
    scorer_batch_size: int = Field(2000, ge=1, le=100_000)
    # How long a batch may wait for more readings once it has one. None by default: batches form
    # on their own while the previous one is being scored, and a linger only delays the reading
    # that starts each batch (measured as the "wait" stage of an alert, docs/perf/scorer.md).
    scorer_batch_max_age_ms: float = Field(0.0, ge=0.0, le=1000.0)
    # QoS of the readings subscription. 0 by default: the scorer runs a clean session, so QoS 1
    # would not redeliver anything across a reconnect, and on a live TCP connection QoS 0 loses
    # nothing; it only saves a PUBACK per reading (a packet, a syscall, and paho/asyncio
    # bookkeeping on the event loop). The durable path is the ingestor's.
    scorer_subscribe_qos: int = Field(0, ge=0, le=1)
    # 3.1.1 by default: the scorer uses no MQTT 5 feature, and over MQTT 5 paho builds a
    # Properties object for every PUBLISH received, which measured as half the scorer's
    # throughput with one reading per message (docs/perf/scorer.md). "5" is accepted.
    scorer_mqtt_protocol: str = Field("3.1.1", pattern=r"^(5|3\.1\.1)$")
    scorer_queue_size: int = Field(100_000, ge=10)
    scorer_mqtt_queue_size: int = Field(100_000, ge=10)
    # Warm start: each sensor's newest readings, at most max_readings of them and none older than
    # the window. The count is the bound that matters (cost at start-up); the window is long so
    # that a sensor reporting every 15 minutes still gets past its 100-reading warm-up (a day
    # of its readings) instead of starting over after every restart.
    scorer_warm_start_window_s: float = Field(7 * 86400.0, ge=0.0)
    scorer_warm_start_max_readings: int = Field(500, ge=0, le=100_000)
    scorer_drain_timeout_s: float = Field(10.0, ge=0.0)
    # Catch-up after every (re)connect: the scorer's clean session loses what is published while
    # it is disconnected, but the ingestor stores it. At most this many readings, no older than
    # the window, are read back and scored before live scoring resumes (the newest ones when the
    # bound is hit; counted in sensorpipe_scorer_catchup_truncated_total).
    scorer_catchup_window_s: float = Field(3600.0, ge=0.0)
    scorer_catchup_max_readings: int = Field(100_000, ge=0, le=10_000_000)
    # How long after subscribing the catch-up query waits: readings published just before the
    # subscription reach the scorer only through the database, once the ingestor has committed
    # them (its batches flush every INGEST_BATCH_MAX_AGE_MS, 50 ms by default).
    scorer_catchup_settle_s: float = Field(0.5, ge=0.0, le=60.0)
    # Deadman alerts for registered sensors silent since before the warm-start window: a sensor
    # silent for longer than this is taken as decommissioned and never alerted on.
    scorer_deadman_max_silence_s: float = Field(7 * 86400.0, ge=0.0)
    scorer_deadman_check_s: float = Field(1.0, gt=0.0)
    scorer_alert_queue_size: int = Field(10_000, ge=1)
    # How often the figures of a shadow candidate (if any) are written to the registry.
    scorer_shadow_stats_s: float = Field(60.0, gt=0.0)

    alert_open_hits: int = Field(3, ge=1)
    alert_open_window: int = Field(5, ge=1)
    alert_instant_score: float | None = Field(0.999, ge=0.0, le=1.0)
    alert_clear_ratio: float = Field(0.7, gt=0.0, le=1.0)
    alert_clear_readings: int = Field(20, ge=1)
    alert_clear_after_s: float = Field(0.0, ge=0.0)
    alert_critical_score: float = Field(0.9, ge=0.0, le=1.0)
    alert_update_min_score_delta: float = Field(0.1, ge=0.0)
    alert_update_min_interval_s: float = Field(60.0, ge=0.0)
    alert_deadman_factor: float = Field(5.0, gt=0.0)
    alert_deadman_floor_s: float = Field(60.0, ge=0.0)

    @field_validator("scorer_shard")
    @classmethod
    def _shard(cls, v: str) -> str:
        parse_shard(v)
        return v

    @model_validator(mode="after")
    def _alerts(self) -> ScorerSettings:
        self.alert_config  # noqa: B018 - raises ValueError on an inconsistent combination
        return self

    @property
    def shard(self) -> tuple[int, int]:
        return parse_shard(self.scorer_shard)

    @property
    def client_id(self) -> str:
        i, n = self.shard
        return self.scorer_client_id or f"sensorpipe-scorer-{i}of{n}"

    @property
    def alert_config(self) -> AlertConfig:
        return AlertConfig(
            open_hits=self.alert_open_hits,
            open_window=self.alert_open_window,
            instant_score=self.alert_instant_score,
            clear_ratio=self.alert_clear_ratio,
            clear_readings=self.alert_clear_readings,
            clear_after_s=self.alert_clear_after_s,
            critical_score=self.alert_critical_score,
            update_min_score_delta=self.alert_update_min_score_delta,
            update_min_interval_s=self.alert_update_min_interval_s,
            deadman_factor=self.alert_deadman_factor,
            deadman_floor_s=self.alert_deadman_floor_s,
        )
