"""Shared fixtures and helpers of the API tests (``test_api_*.py`` import what they use).

Everything is real: the app runs its lifespan under ``TestClient`` against a private PostgreSQL
database (``db_url``) and the private Mosquitto (``broker``); models are fitted by the scoring
library's own training code on small synthetic data and stored through ``core.registry``.
"""

from __future__ import annotations

import itertools
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.security import SCOPES, create_key
from api.settings import ApiSettings
from core import registry
from core.scoring import ForecasterSpec, ScoringConfig
from core.scoring.training import fit_detector, synthetic_series
from tests.servers import MosquittoServer

_client_ids = itertools.count()

SCOPE_SETS: dict[str, tuple[str, ...]] = {
    "ingest": ("data:ingest",),
    "reports": ("reports:read",),
    "predict": ("ml:predict",),
    "admin": ("admin",),
}


def build_models_dir(path: Path) -> Path:
    """A registry with an active anomaly_detector (fitted) and forecaster (AR(3) spec)."""
    path.mkdir(parents=True, exist_ok=True)
    config = ScoringConfig(seed=3)
    forest, info = fit_detector(synthetic_series(3, n_series=3, length=500), config, seed=3)
    meta = {
        "data_window": "synthetic seed 3",
        "features": info["features"],
        "parameters": info["params"],
        "metrics": {},
        "calibration": info["calibration"],
    }
    v = registry.save_version(path, "anomaly_detector", forest, meta)
    registry.activate(path, "anomaly_detector", v)
    spec = ForecasterSpec(p=3, d=0)
    v = registry.save_version(
        path,
        "forecaster",
        spec,
        {"data_window": "default", "features": None, "parameters": {"p": 3, "d": 0}, "metrics": {}},
    )
    registry.activate(path, "forecaster", v)
    return path


@pytest.fixture(scope="session")
def api_session_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_models_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture
def api_models_dir(api_session_models_dir: Path, tmp_path: Path) -> Path:
    """A per-test copy, so a test may corrupt or change it."""
    dest = tmp_path / "models"
    shutil.copytree(api_session_models_dir, dest)
    return dest


def make_settings(
    db_url: str, mqtt_url: str, models_dir: Path | str, **overrides: Any
) -> ApiSettings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "mqtt_url": mqtt_url,
        "models_dir": str(models_dir),
        "api_refresh_interval_s": 0.2,
        "api_key_cache_s": 0.0,
        "api_mqtt_client_id": f"sensorpipe-api-test-{next(_client_ids)}",
        "log_format": "text",
    }
    values.update(overrides)
    return ApiSettings(**values)


@dataclass
class Keys:
    """One key per scope set, plus helpers to build headers."""

    values: dict[str, str]

    def headers(self, name: str, **extra: str) -> dict[str, str]:
        return {"X-API-Key": self.values[name], **extra}


def create_keys(db_url: str, rate_limit_per_min: int = 100_000) -> Keys:
    values: dict[str, str] = {}
    with psycopg.connect(db_url) as conn:
        for name, scopes in SCOPE_SETS.items():
            values[name], _ = create_key(conn, f"test-{name}", scopes, rate_limit_per_min)
        values["all"], _ = create_key(
            conn, "test-all", [s for s in SCOPES if s != "admin"], rate_limit_per_min
        )
    return Keys(values)


@pytest.fixture
def api_settings(db_url: str, broker: MosquittoServer, api_models_dir: Path) -> ApiSettings:
    return make_settings(db_url, broker.url, api_models_dir)


@pytest.fixture
def api_keys(db_url: str) -> Keys:
    return create_keys(db_url)


@pytest.fixture
def api_client(api_settings: ApiSettings) -> Iterator[TestClient]:
    """The real app, lifespan running, on this test's database and the session broker."""
    with TestClient(create_app(api_settings)) as c:
        yield c


# --------------------------------------------------------------------------------- data seeding


def add_sensor(
    db_url: str,
    sensor_id: str,
    *,
    interval_s: float | None = 10.0,
    unit: str = "Cel",
    sensor_type: str = "temperature",
) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO sensors (sensor_id, sensor_type, unit, expected_interval_s) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (sensor_id, sensor_type, unit, interval_s),
        )


def sine_values(
    n: int, *, base: float = 20.0, amp: float = 2.0, period: int = 50, noise_seed: int = 1
) -> list[float]:
    """A smooth signal with a little deterministic noise (normal behaviour for the detectors)."""
    import random

    rnd = random.Random(noise_seed)
    return [base + amp * math.sin(2 * math.pi * i / period) + rnd.gauss(0, 0.1) for i in range(n)]


def add_readings(
    db_url: str,
    sensor_id: str,
    values: list[float],
    *,
    end: datetime | None = None,
    interval_s: float = 10.0,
) -> list[datetime]:
    """Store ``values`` as readings spaced ``interval_s`` apart, the last one at ``end``."""
    end = end or datetime.now(UTC).replace(microsecond=0)
    times = [
        end - timedelta(seconds=interval_s * (len(values) - 1 - i)) for i in range(len(values))
    ]
    with (
        psycopg.connect(db_url) as conn,
        conn.cursor() as cur,
        cur.copy("COPY sensor_readings (sensor_id, time, value) FROM STDIN") as copy,
    ):
        for t, v in zip(times, values, strict=True):
            copy.write_row((sensor_id, t, v))
    return times


def add_event(
    db_url: str,
    sensor_id: str,
    *,
    opened_at: datetime,
    severity: str = "warning",
    state: str = "open",
    kind: str = "anomaly",
    score: float = 0.9,
) -> str:
    import uuid

    event_id = str(uuid.uuid4())
    resolved = opened_at + timedelta(minutes=5) if state == "resolved" else None
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO anomaly_events (event_id, sensor_id, kind, state, severity, score, value,"
            " detectors, model_version, opened_at, updated_at, resolved_at, emitted_at) VALUES "
            "(%s, %s, %s, %s, %s, %s, 1.0, '{\"forecast_residual\": 0.9}', 'anomaly_detector:v1',"
            " %s, %s, %s, %s)",
            (
                event_id,
                sensor_id,
                kind,
                state,
                severity,
                score,
                opened_at,
                opened_at,
                resolved,
                opened_at,
            ),
        )
    return event_id


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Subscriber:
    """A real MQTT subscriber (paho, its own network thread) collecting what the API publishes."""

    def __init__(self, broker: MosquittoServer, *topics: str) -> None:
        import threading

        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        version = mqtt.CallbackAPIVersion.VERSION2  # type: ignore[attr-defined]
        self._client = mqtt.Client(version, client_id=f"api-test-sub-{next(_client_ids)}")
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_a: self._subscribed.set()
        self._client.connect("127.0.0.1", broker.port)
        self._client.subscribe([(t, 1) for t in topics])
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("subscription not acknowledged")

    def _on_message(self, _c: object, _u: object, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[tuple[str, bytes]]:
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.01)
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
