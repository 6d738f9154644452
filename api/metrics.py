"""Prometheus metrics of the API, on a registry of the app's own (many apps per test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from core.metrics import LATENCY_BUCKETS_S, SIZE_BUCKETS


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sensorpipe_api_requests_total",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "sensorpipe_api_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.limit_hits = Counter(
            "sensorpipe_api_limit_hits_total",
            "Requests refused by a limit (body, batch, range, ...)",
            ["limit"],
            registry=r,
        )
        self.rate_limited = Counter(
            "sensorpipe_api_rate_limited_total",
            "Requests refused with 429 by the per-key limiter",
            registry=r,
        )
        self.auth_failures = Counter(
            "sensorpipe_api_auth_failures_total",
            "Requests refused with 401/403",
            ["reason"],
            registry=r,
        )
        self.readings_accepted = Counter(
            "sensorpipe_api_ingest_readings_accepted_total",
            "Readings accepted over HTTP and published",
            registry=r,
        )
        self.readings_rejected = Counter(
            "sensorpipe_api_ingest_readings_rejected_total",
            "Readings rejected over HTTP by reason",
            ["reason"],
            registry=r,
        )
        self.idempotent_replays = Counter(
            "sensorpipe_api_idempotent_replays_total",
            "Ingest requests answered from the idempotency store",
            registry=r,
        )
        self.scored = Counter(
            "sensorpipe_api_state_readings_total",
            "Stored readings fed to the cached per-sensor scoring state",
            registry=r,
        )
        self.cached_sensors = Gauge(
            "sensorpipe_api_cached_sensors",
            "Sensors with a warm scoring state in this process",
            registry=r,
        )
        self.detect_batch = Histogram(
            "sensorpipe_api_detect_batch_requests",
            "detect_anomaly requests scored together in one scorer call",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.refresh_errors = Counter(
            "sensorpipe_api_state_refresh_errors_total",
            "Failed background refreshes of model state",
            registry=r,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
