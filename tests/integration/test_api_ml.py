"""``/predict``, ``/detect_anomaly`` and ``/models``: answers from the cached, background-updated
per-sensor state, with the registry's models."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core import registry
from core.scoring import ForecasterSpec
from tests.integration.api_support import (
    Keys,
    add_readings,
    add_sensor,
    make_settings,
    sine_values,
)
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

PREDICT = "/api/v1/predict"
DETECT = "/api/v1/detect_anomaly"


@pytest.fixture
def history(db_url: str) -> datetime:
    """Sensor ``ml.1`` with 300 normal readings 10 s apart, the last one a minute ago."""
    add_sensor(db_url, "ml.1", interval_s=10.0)
    add_sensor(db_url, "ml.2", interval_s=10.0)
    add_sensor(db_url, "ml.short", interval_s=10.0)
    add_sensor(db_url, "ml.empty", interval_s=10.0)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    add_readings(db_url, "ml.1", sine_values(300), end=end)
    add_readings(db_url, "ml.2", sine_values(300, base=100.0, noise_seed=2), end=end)
    add_readings(db_url, "ml.short", sine_values(5), end=end)
    return end


def test_predict_returns_intervals_and_version(
    history: datetime, api_client: TestClient, api_keys: Keys
) -> None:
    r = api_client.post(
        PREDICT, json={"sensor_id": "ml.1", "horizon": 6}, headers=api_keys.headers("predict")
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_version"] == "forecaster:v1" and out["horizon"] == 6
    assert out["interval_s"] == pytest.approx(10.0, rel=0.05)
    points = out["points"]
    assert len(points) == 6
    first = datetime.fromisoformat(points[0]["timestamp"])
    assert first - history == pytest.approx(timedelta(seconds=10), abs=timedelta(seconds=1))
    for p in points:
        assert p["lower_95"] <= p["lower_80"] <= p["mean"] <= p["upper_80"] <= p["upper_95"]
        assert 15.0 < p["mean"] < 25.0  # the sine lives in 18..22
    widths = [p["upper_95"] - p["lower_95"] for p in points]
    assert widths[-1] >= widths[0]  # uncertainty does not shrink with the horizon


def test_predict_errors(history: datetime, api_client: TestClient, api_keys: Keys) -> None:
    h = api_keys.headers("predict")
    r = api_client.post(PREDICT, json={"sensor_id": "nope", "horizon": 3}, headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    for sid, available in (("ml.short", 5), ("ml.empty", 0)):
        r = api_client.post(PREDICT, json={"sensor_id": sid, "horizon": 3}, headers=h)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "insufficient_data"
        assert err["available"] == available and err["needed"] > available
        assert str(err["needed"]) in err["message"]
    r = api_client.post(PREDICT, json={"sensor_id": "ml.1", "horizon": 10_000}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "horizon_too_large"
    assert r.json()["error"]["max_horizon"] == 288
    r = api_client.post(PREDICT, json={"sensor_id": "ml.1", "horizon": 0}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    r = api_client.post(PREDICT, json={"sensor_id": "a/b", "horizon": 1}, headers=h)
    assert r.status_code == 422


def test_state_follows_new_readings_in_the_background(
    db_url: str, history: datetime, api_client: TestClient, api_keys: Keys
) -> None:
    h = api_keys.headers("predict")
    before = api_client.post(PREDICT, json={"sensor_id": "ml.1", "horizon": 1}, headers=h).json()
    newest = history + timedelta(seconds=50)
    add_readings(db_url, "ml.1", sine_values(5, noise_seed=9), end=newest)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = api_client.post(PREDICT, json={"sensor_id": "ml.1", "horizon": 1}, headers=h).json()
        if after["points"][0]["timestamp"] != before["points"][0]["timestamp"]:
            break
        time.sleep(0.05)
    first = datetime.fromisoformat(after["points"][0]["timestamp"])
    assert first - newest == pytest.approx(timedelta(seconds=10), abs=timedelta(seconds=1))


def _detect(c: TestClient, keys: Keys, body: object) -> Any:
    r = c.post(DETECT, json=body, headers=keys.headers("predict"))
    assert r.status_code == 200, r.text
    return r.json()


def test_detect_normal_and_anomalous(
    history: datetime, api_client: TestClient, api_keys: Keys
) -> None:
    t = (history + timedelta(seconds=10)).timestamp()
    normal = _detect(api_client, api_keys, {"sensor_id": "ml.1", "value": 20.0, "timestamp": t})
    assert normal["model_version"] == "anomaly_detector:v1"
    [res] = normal["results"]
    assert res["warm"] is True and res["is_anomaly"] is False
    assert res["score"] < res["threshold"] == 0.5
    assert set(res["detectors"]) == {"forecast_residual", "isolation_forest", "half_space_trees"}
    assert res["lower"] < res["expected"] < res["upper"]
    wild = _detect(api_client, api_keys, {"sensor_id": "ml.1", "value": 80.0, "timestamp": t})
    [res] = wild["results"]
    assert res["is_anomaly"] is True and res["score"] >= res["threshold"]


def test_detect_does_not_change_the_live_state(
    history: datetime, api_client: TestClient, api_keys: Keys
) -> None:
    t = (history + timedelta(seconds=10)).timestamp()
    body = {"sensor_id": "ml.1", "value": 21.0, "timestamp": t}
    first = _detect(api_client, api_keys, body)
    forecast = api_client.post(
        PREDICT, json={"sensor_id": "ml.1", "horizon": 3}, headers=api_keys.headers("predict")
    ).json()
    for v in (80.0, -50.0, 21.0, 20.5):  # what-ifs, each would teach a learning scorer something
        _detect(api_client, api_keys, {"sensor_id": "ml.1", "value": v, "timestamp": t})
    assert _detect(api_client, api_keys, body) == first
    assert (
        api_client.post(
            PREDICT, json={"sensor_id": "ml.1", "horizon": 3}, headers=api_keys.headers("predict")
        ).json()
        == forecast
    )


def test_detect_batch_in_order_across_sensors(
    history: datetime, api_client: TestClient, api_keys: Keys
) -> None:
    t = (history + timedelta(seconds=10)).timestamp()
    batch = [
        {"sensor_id": "ml.2", "value": 100.0, "timestamp": t},
        {"sensor_id": "ml.1", "value": 20.0, "timestamp": t},
        {"sensor_id": "ml.1", "value": 95.0, "timestamp": t + 10},
    ]
    out = _detect(api_client, api_keys, batch)
    results = out["results"]
    assert [(r["sensor_id"], r["value"]) for r in results] == [
        ("ml.2", 100.0),
        ("ml.1", 20.0),
        ("ml.1", 95.0),
    ]
    assert [r["is_anomaly"] for r in results] == [False, False, True]


def test_detect_errors(
    history: datetime, db_url: str, broker: MosquittoServer, api_models_dir: Path, api_keys: Keys
) -> None:
    settings = make_settings(db_url, broker.url, api_models_dir, api_max_detect_items=2)
    t = time.time()
    with TestClient(create_app(settings)) as c:
        h = api_keys.headers("predict")
        r = c.post(DETECT, json={"sensor_id": "ghost", "value": 1.0, "timestamp": t}, headers=h)
        assert r.status_code == 404
        r = c.post(
            DETECT,
            json=[
                {"sensor_id": "ml.1", "value": 1.0, "timestamp": t},
                {"sensor_id": "ml.1", "value": "x", "timestamp": t},
            ],
            headers=h,
        )
        assert r.status_code == 422
        assert r.json()["error"]["errors"] == [
            {"index": 1, "reason": "invalid_value", "detail": "value 'x' is not a number"}
        ]
        r = c.post(
            DETECT, json=[{"sensor_id": "ml.1", "value": 1.0, "timestamp": t}] * 3, headers=h
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "batch_too_large"


def test_models_list_and_reload(
    db_url: str, broker: MosquittoServer, api_models_dir: Path, api_keys: Keys, history: datetime
) -> None:
    with TestClient(create_app(make_settings(db_url, broker.url, api_models_dir))) as c:
        listing = c.get("/api/v1/models", headers=api_keys.headers("reports")).json()
        assert listing["ready"] is True
        assert [(m["name"], m["version"]) for m in listing["models"]] == [
            ("anomaly_detector", 1),
            ("forecaster", 1),
        ]
        assert listing["models"][0]["meta"]["features"][0] == "value_z"
        v2 = registry.save_version(
            api_models_dir,
            "forecaster",
            ForecasterSpec(p=4),
            {"data_window": "test", "features": None, "parameters": {"p": 4}, "metrics": {}},
        )
        registry.activate(api_models_dir, "forecaster", v2)
        r = c.post("/api/v1/models/reload", headers=api_keys.headers("admin"))
        assert r.status_code == 200, r.text
        assert r.json()["models"][1]["tag"] == "forecaster:v2"
        p = c.post(
            PREDICT, json={"sensor_id": "ml.1", "horizon": 2}, headers=api_keys.headers("predict")
        )
        assert p.status_code == 200 and p.json()["model_version"] == "forecaster:v2"
        # A broken activation: 503 with the reason, and v2 keeps serving.
        (api_models_dir / "active.json").write_text('{"anomaly_detector": 9, "forecaster": 2}')
        r = c.post("/api/v1/models/reload", headers=api_keys.headers("admin"))
        assert r.status_code == 503 and r.json()["error"]["reason"] == "missing"
        p = c.post(
            PREDICT, json={"sensor_id": "ml.1", "horizon": 2}, headers=api_keys.headers("predict")
        )
        assert p.status_code == 200 and p.json()["model_version"] == "forecaster:v2"
        assert c.get("/health/ready").status_code == 200


def test_concurrent_checks_are_batched_but_independent(
    history: datetime, api_client: TestClient, api_keys: Keys
) -> None:
    """Requests scored together in one scorer call answer exactly as when sent one by one."""
    t = (history + timedelta(seconds=10)).timestamp()
    bodies = [
        {"sensor_id": sid, "value": v, "timestamp": t}
        for sid in ("ml.1", "ml.2")
        for v in (20.0, 21.5, 60.0, 100.0, 101.0, -5.0)
    ]
    alone = [_detect(api_client, api_keys, b) for b in bodies]
    with ThreadPoolExecutor(max_workers=12) as pool:
        together = list(pool.map(lambda b: _detect(api_client, api_keys, b), bodies * 3))
    assert together == alone * 3
