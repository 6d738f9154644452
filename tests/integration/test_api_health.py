"""Health, readiness, metrics, request ids and the error envelope, through the real app."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from tests.integration.api_support import (
    Keys,
    make_settings,
)
from tests.servers import MosquittoServer, free_port

pytestmark = pytest.mark.integration


def test_liveness_db_and_readiness_ok(api_client: TestClient) -> None:
    assert api_client.get("/health").json() == {"status": "ok"}
    db = api_client.get("/health/db")
    assert db.status_code == 200 and db.json()["status"] == "ok"
    ready = api_client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "models": "ok"},
    }


def test_request_id_is_echoed_or_generated(api_client: TestClient) -> None:
    r = api_client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    generated = api_client.get("/health").headers["x-request-id"]
    assert len(generated) == 32
    # A hostile id (spaces, newlines, overlong) is replaced, never reflected.
    hostile = api_client.get("/health", headers={"X-Request-ID": "x" * 300})
    assert hostile.headers["x-request-id"] != "x" * 300


def test_errors_are_json_with_request_id(api_client: TestClient) -> None:
    r = api_client.get("/nope", headers={"X-Request-ID": "rid-1"})
    assert r.status_code == 404
    assert r.json()["error"] == {"code": "not_found", "message": "Not Found", "request_id": "rid-1"}
    r = api_client.put("/health")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_metrics_count_requests_by_route_template(api_client: TestClient, api_keys: Keys) -> None:
    api_client.get("/api/v1/sensors/abc", headers=api_keys.headers("reports"))
    api_client.get("/api/v1/sensors/xyz", headers=api_keys.headers("reports"))
    text = api_client.get("/metrics").text
    assert (
        'sensorpipe_api_requests_total{method="GET",route="/api/v1/sensors/{sensor_id}",'
        'status="404"} 2.0'
    ) in text
    assert "sensorpipe_api_request_duration_seconds_bucket" in text


def test_missing_models_make_ml_503_but_rest_works(
    db_url: str, broker: MosquittoServer, tmp_path: Path, api_keys: Keys
) -> None:
    settings = make_settings(db_url, broker.url, tmp_path / "empty")
    with TestClient(create_app(settings)) as c:
        ready = c.get("/health/ready")
        assert ready.status_code == 503
        err = ready.json()["error"]
        assert err["code"] == "not_ready" and err["checks"]["models"].startswith(
            "model unavailable (missing)"
        )
        r = c.post(
            "/api/v1/predict",
            json={"sensor_id": "s1", "horizon": 3},
            headers=api_keys.headers("predict"),
        )
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable"
        assert r.json()["error"]["reason"] == "missing"
        assert c.get("/api/v1/sensors", headers=api_keys.headers("reports")).status_code == 200
        models = c.get("/api/v1/models", headers=api_keys.headers("reports")).json()
        assert models["ready"] is False and models["models"][0]["loaded"] is False


def test_corrupt_model_is_refused_with_reason(
    db_url: str, broker: MosquittoServer, api_models_dir: Path, api_keys: Keys
) -> None:
    artifact = api_models_dir / "anomaly_detector_v1.joblib"
    artifact.write_bytes(artifact.read_bytes()[:-10] + b"0123456789")
    with TestClient(create_app(make_settings(db_url, broker.url, api_models_dir))) as c:
        ready = c.get("/health/ready").json()["error"]
        assert "checksum_mismatch" in ready["checks"]["models"]
        r = c.post(
            "/api/v1/detect_anomaly",
            headers=api_keys.headers("predict"),
            json={"sensor_id": "s1", "value": 1.0, "timestamp": time.time()},
        )
        assert r.status_code == 503 and r.json()["error"]["reason"] == "checksum_mismatch"


def test_broker_down_makes_ready_and_ingest_503(
    db_url: str, api_models_dir: Path, api_keys: Keys
) -> None:
    dead = f"mqtt://127.0.0.1:{free_port()}"
    settings = make_settings(db_url, dead, api_models_dir, api_startup_grace_s=0.5)
    with TestClient(create_app(settings)) as c:
        ready = c.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["error"]["checks"]["broker"] != "ok"
        r = c.post(
            "/api/v1/data/ingest",
            headers=api_keys.headers("ingest"),
            content=json.dumps({"sensor_id": "s1", "value": 1, "timestamp": time.time()}),
        )
        assert r.status_code == 503 and r.json()["error"]["code"] == "broker_unavailable"


def test_database_down_is_503_not_500(broker: MosquittoServer, api_models_dir: Path) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    settings: ApiSettings = make_settings(
        dead, broker.url, api_models_dir, api_db_timeout_s=1.0, api_startup_grace_s=0.5
    )
    with TestClient(create_app(settings)) as c:
        assert c.get("/health").status_code == 200
        db = c.get("/health/db")
        assert db.status_code == 503 and db.json()["error"]["code"] == "database_unavailable"
        r = c.get("/api/v1/sensors", headers={"X-API-Key": "sp_00000000_x"})
        assert r.status_code == 503
        assert "Traceback" not in r.text and "postgresql://" not in r.text


def test_cors_is_off_by_default_and_on_when_configured(
    db_url: str, broker: MosquittoServer, api_models_dir: Path
) -> None:
    preflight = {"Origin": "https://ops.example", "Access-Control-Request-Method": "GET"}
    with TestClient(create_app(make_settings(db_url, broker.url, api_models_dir))) as c:
        r = c.options("/api/v1/sensors", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    settings = make_settings(
        db_url, broker.url, api_models_dir, api_cors_origins="https://ops.example"
    )
    with TestClient(create_app(settings)) as c:
        r = c.options("/api/v1/sensors", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://ops.example"


def test_unexpected_error_is_a_json_500_without_stack(
    api_settings: ApiSettings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(api_settings)

    async def boom() -> None:
        raise RuntimeError("secret internals: /etc/passwd")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom", headers={"X-Request-ID": "rid-500"})
    assert r.status_code == 500
    assert r.json() == {
        "error": {
            "code": "internal_error",
            "request_id": "rid-500",
            "message": "internal error; the request id identifies it in the logs",
        }
    }
    assert "Traceback" not in r.text and "secret" not in r.text
    # The stack goes to the log (whose lines carry the request id), never to the client.
    [record] = [x for x in caplog.records if x.getMessage().startswith("unhandled error")]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
