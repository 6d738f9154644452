"""Prometheus metrics of the scorer (``sensorpipe_scorer_*``), on a registry it is given."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from core.metrics import LATENCY_BUCKETS_S, SIZE_BUCKETS

# Finer than LATENCY_BUCKETS_S below 10 ms, where the stages of one alert live; the same above.
STAGE_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.004,
    0.005,
    0.0075,
    *(b for b in LATENCY_BUCKETS_S if b >= 0.01),
)


class ScorerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        p = "sensorpipe_scorer_"
        self.readings_scored = Counter(p + "readings_scored", "Readings scored.", registry=registry)
        self.rejected = Counter(
            p + "rejected",
            "Messages or items the wire format rejected (stored by the ingestor; "
            "the scorer skips them).",
            ["reason"],
            registry=registry,
        )
        self.skipped = Counter(
            p + "skipped",
            "Readings not scored: queue_full (dropped at the MQTT queue), "
            "caught_up (a live copy of a reading the catch-up already scored), "
            "stale (not newer than the sensor's last scored reading).",
            ["reason"],
            registry=registry,
        )
        self.alerts_opened = Counter(
            p + "alerts_opened", "Incidents opened.", ["kind", "severity"], registry=registry
        )
        self.alerts_updated = Counter(
            p + "alerts_updated",
            "Incident updates emitted.",
            ["kind", "severity"],
            registry=registry,
        )
        self.alerts_resolved = Counter(
            p + "alerts_resolved", "Incidents resolved.", ["kind", "severity"], registry=registry
        )
        self.open_alerts = Gauge(p + "open_alerts", "Incidents open now.", registry=registry)
        self.alert_errors = Counter(
            p + "alert_errors",
            "Failed alert writes or publishes (retried).",
            ["stage"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            p + "batch_seconds",
            "Time to decode and score one micro-batch.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.batch_size = Histogram(
            p + "batch_size", "Readings per micro-batch.", buckets=SIZE_BUCKETS, registry=registry
        )
        self.alert_latency = Histogram(
            p + "alert_latency_seconds",
            "From a reading's device time (since=device) or its "
            "arrival at the scorer (since=received) to the alert it caused being published.",
            ["since"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.alert_stage = Histogram(
            p + "alert_stage_seconds",
            "Where a live anomaly alert's time goes, by stage: wait (arrival at the scorer to its "
            "batch starting), process (decode, score and hand-over to the store call), store "
            "(anomaly_events upsert and COMMIT), publish (until the broker's PUBACK).",
            ["stage"],
            buckets=STAGE_BUCKETS_S,
            registry=registry,
        )
        self.queue_depth = Gauge(
            p + "queue_depth", "Messages waiting to be scored.", ["queue"], registry=registry
        )
        self.model_loaded = Gauge(
            p + "model_loaded",
            "1 for the model version in use.",
            ["model", "version"],
            registry=registry,
        )
        self.model_reloads = Counter(
            p + "model_reloads", "Model reloads (SIGHUP) by result.", ["result"], registry=registry
        )
        self.shadow_loaded = Gauge(
            p + "shadow_loaded",
            "1 for a candidate version scored in shadow (never alerting).",
            ["model", "version"],
            registry=registry,
        )
        self.shadow_agreement = Gauge(
            p + "shadow_agreement",
            "Share of readings on which the shadow candidate's verdict equals the active model's.",
            registry=registry,
        )
        self.sensors = Gauge(p + "sensors", "Sensors with scoring state.", registry=registry)
        self.catchups = Counter(
            p + "catchups",
            "Catch-ups after a (re)connect by result: ok, truncated (the max-readings bound was "
            "hit, older readings left out), failed (database error; live scoring goes on).",
            ["result"],
            registry=registry,
        )
        self.catchup_readings = Counter(
            p + "catchup_readings",
            "Readings read back from the database by catch-ups (scored unless already scored).",
            registry=registry,
        )
        self.warm_start_readings = Gauge(
            p + "warm_start_readings", "Readings loaded by the last warm start.", registry=registry
        )
