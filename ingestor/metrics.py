"""Prometheus metrics of the ingestor, registered on a registry the caller owns.

A registry per ingestor lets tests and benchmarks run several ingestors in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from core.metrics import LATENCY_BUCKETS_S, SIZE_BUCKETS
from core.wire import iter_reason_codes

PREFIX = "sensorpipe_ingestor"
# Reasons the ingestor adds to the wire's own: a message that crashed our code, and a message
# the database refused on its own (e.g. a constraint the wire format does not know about).
INGESTOR_REASONS = ("internal_error", "storage_rejected")
LAG_BUCKETS_S = (*LATENCY_BUCKETS_S, 30.0, 60.0, 300.0, 3600.0)


class IngestorMetrics:
    """Every metric of one ingestor."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.messages_received = Counter(
            f"{PREFIX}_messages_received_total",
            "MQTT messages received",
            ["kind"],
            registry=registry,
        )
        self.rows_written = Counter(
            f"{PREFIX}_rows_written_total", "readings newly stored", registry=registry
        )
        self.duplicates_skipped = Counter(
            f"{PREFIX}_duplicates_skipped_total",
            "readings already stored (redelivery or re-send), skipped by ON CONFLICT",
            registry=registry,
        )
        self.rejected = Counter(
            f"{PREFIX}_rejected_total",
            "rejected messages or items, by reason",
            ["reason"],
            registry=registry,
        )
        self.messages_acked = Counter(
            f"{PREFIX}_messages_acked_total",
            "messages acknowledged after COMMIT",
            registry=registry,
        )
        self.acks_skipped = Counter(
            f"{PREFIX}_acks_skipped_total",
            "acknowledgements not sent because the connection they belong to is gone "
            "(the broker redelivers those messages)",
            registry=registry,
        )
        self.batch_rows = Histogram(
            f"{PREFIX}_batch_rows",
            "readings per flushed batch",
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.flush_duration = Histogram(
            f"{PREFIX}_flush_duration_seconds",
            "time to write and commit one batch",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.lag = Histogram(
            f"{PREFIX}_lag_seconds",
            "receive time minus device time of the newest reading of each message",
            buckets=LAG_BUCKETS_S,
            registry=registry,
        )
        self.flush_failures = Counter(
            f"{PREFIX}_flush_failures_total",
            "failed batch writes (retried)",
            ["reason"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth_messages", "messages waiting for the writer", registry=registry
        )
        self.held = Gauge(
            f"{PREFIX}_held_messages",
            "messages received and not yet acknowledged (queued, batching or being written); "
            "at most Receive Maximum: the ingestor's memory bound",
            registry=registry,
        )
        self.queue_full = Counter(
            f"{PREFIX}_queue_full_total",
            "times the network thread waited on a full queue",
            registry=registry,
        )
        self.db_up = Gauge(
            f"{PREFIX}_db_up", "1 when the last database operation succeeded", registry=registry
        )
        self.mqtt_connected = Gauge(
            f"{PREFIX}_mqtt_connected", "1 while connected to the broker", registry=registry
        )
        self.mqtt_connects = Counter(
            f"{PREFIX}_mqtt_connects_total", "successful broker connections", registry=registry
        )
        for reason in (*iter_reason_codes(), *INGESTOR_REASONS):
            self.rejected.labels(reason)  # pre-register: a zero is information too
        for kind in ("readings", "senml", "unknown"):
            self.messages_received.labels(kind)
