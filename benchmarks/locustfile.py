"""Mixed API load for locust (``benchmarks/bench_api.py`` runs it headless).

Weights follow what a deployment sees: mostly anomaly checks and ingest from programs, some
forecasts, and a trickle of readings and report queries from people and dashboards.
Environment: ``BENCH_KEY`` (an API key with every scope but admin), ``BENCH_SENSORS``
(comma-separated sensor ids with history).
"""

from __future__ import annotations

import os
import random
import time

from locust import FastHttpUser, between, task

KEY = os.environ.get("BENCH_KEY", "")
SENSORS = [s for s in os.environ.get("BENCH_SENSORS", "bench.000").split(",") if s]


class ApiClient(FastHttpUser):
    wait_time = between(0.01, 0.05)

    def on_start(self) -> None:
        self.headers = {"X-API-Key": KEY}

    @task(10)
    def detect(self) -> None:
        s = random.choice(SENSORS)
        self.client.post(
            "/api/v1/detect_anomaly",
            headers=self.headers,
            name="detect_anomaly",
            json={"sensor_id": s, "value": 20.0, "timestamp": time.time()},
        )

    @task(5)
    def ingest(self) -> None:
        s = random.choice(SENSORS)
        now = time.time()
        batch = [{"sensor_id": s, "value": 20.0, "timestamp": now - i} for i in range(20)]
        self.client.post(
            "/api/v1/data/ingest", headers=self.headers, name="data/ingest x20", json=batch
        )

    @task(3)
    def predict(self) -> None:
        self.client.post(
            "/api/v1/predict",
            headers=self.headers,
            name="predict",
            json={"sensor_id": random.choice(SENSORS), "horizon": 12},
        )

    @task(1)
    def readings(self) -> None:
        s = random.choice(SENSORS)
        self.client.get(
            f"/api/v1/sensors/{s}/readings?bucket=5m",
            headers=self.headers,
            name="sensors/{id}/readings 5m",
        )

    @task(1)
    def summary(self) -> None:
        self.client.get("/api/v1/reports/summary", headers=self.headers, name="reports/summary")
