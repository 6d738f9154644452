"""API keys end to end: the key × scope matrix, 401/403/429, revocation, usage time, the CLI."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.security import create_key
from api.settings import ApiSettings
from core.errors import PipelineError
from sensorpipe.commands import keys as keys_command
from tests.conftest import TEMPLATE_DB
from tests.integration.api_support import (
    SCOPE_SETS,
    Keys,
    add_readings,
    add_sensor,
    create_keys,
    make_settings,
    sine_values,
)
from tests.servers import MosquittoServer, PgServer

pytestmark = pytest.mark.integration


def _now() -> float:
    return time.time()


# (method, path, json body or None, required scope)
ENDPOINTS: list[tuple[str, str, object, str]] = [
    ("POST", "/api/v1/data/ingest", "reading", "data:ingest"),
    ("POST", "/api/v1/predict", {"sensor_id": "m1", "horizon": 3}, "ml:predict"),
    ("POST", "/api/v1/detect_anomaly", "reading", "ml:predict"),
    ("GET", "/api/v1/sensors", None, "reports:read"),
    ("GET", "/api/v1/sensors/m1", None, "reports:read"),
    ("GET", "/api/v1/sensors/m1/readings", None, "reports:read"),
    ("GET", "/api/v1/anomalies", None, "reports:read"),
    ("GET", "/api/v1/reports/summary", None, "reports:read"),
    ("GET", "/api/v1/reports/aggregates", None, "reports:read"),
    ("GET", "/api/v1/models", None, "reports:read"),
    ("POST", "/api/v1/models/reload", None, "admin"),
]


@pytest.fixture(scope="module")
def matrix(
    pg_server: PgServer, broker: MosquittoServer, api_session_models_dir: Path
) -> Iterator[tuple[TestClient, Keys]]:
    """One app for the whole matrix (its answers do not depend on each other)."""
    db_url = pg_server.create_db(f"api_matrix_{os.getpid()}", template=TEMPLATE_DB)
    add_sensor(db_url, "m1")
    add_readings(db_url, "m1", sine_values(200))
    keys = create_keys(db_url)
    with TestClient(create_app(make_settings(db_url, broker.url, api_session_models_dir))) as c:
        yield c, keys


def _call(c: TestClient, method: str, path: str, body: object, headers: dict[str, str]) -> int:
    if body == "reading":
        body = {"sensor_id": "m1", "value": 20.0, "timestamp": _now()}
    return c.request(method, path, json=body, headers=headers).status_code


@pytest.mark.parametrize("key_name", list(SCOPE_SETS))
@pytest.mark.parametrize(
    ("method", "path", "body", "scope"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
def test_key_scope_matrix(
    matrix: tuple[TestClient, Keys], key_name: str, method: str, path: str, body: object, scope: str
) -> None:
    c, keys = matrix
    status = _call(c, method, path, body, keys.headers(key_name))
    allowed = scope in SCOPE_SETS[key_name] or "admin" in SCOPE_SETS[key_name]
    if allowed:
        assert status in (200, 202), f"{key_name} should reach {path}, got {status}"
    else:
        assert status == 403, f"{key_name} must be refused {path}, got {status}"


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
def test_every_protected_endpoint_needs_a_key(
    matrix: tuple[TestClient, Keys], method: str, path: str, body: object, scope: str
) -> None:
    c, _ = matrix
    r = c.request(method, path, json=body if body != "reading" else {})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "missing_api_key"
    assert r.headers["www-authenticate"] == "ApiKey"


@pytest.mark.parametrize(
    "bad",
    ["not-a-key", "sp_zzzzzzzz_secret", "sp_0123abcd_", "sp_0123abcd_wrong-secret", "x" * 5000],
)
def test_invalid_keys_are_401(matrix: tuple[TestClient, Keys], bad: str) -> None:
    c, _ = matrix
    r = c.get("/api/v1/sensors", headers={"X-API-Key": bad})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_right_prefix_wrong_secret_is_401(matrix: tuple[TestClient, Keys]) -> None:
    c, keys = matrix
    real = keys.values["reports"]
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    r = c.get("/api/v1/sensors", headers={"X-API-Key": forged})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_revoked_key_is_refused(db_url: str, api_client: TestClient, api_keys: Keys) -> None:
    headers = api_keys.headers("reports")
    assert api_client.get("/api/v1/sensors", headers=headers).status_code == 200
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE name = 'test-reports'")
    r = api_client.get("/api/v1/sensors", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "revoked_api_key"


def test_rate_limit_is_429_with_retry_after(db_url: str, api_client: TestClient) -> None:
    with psycopg.connect(db_url) as conn:
        key, _ = create_key(conn, "slow", ["reports:read"], rate_limit_per_min=3)
    codes = [
        api_client.get("/api/v1/models", headers={"X-API-Key": key}).status_code for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    r = api_client.get("/api/v1/models", headers={"X-API-Key": key})
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    # One token comes back every 20 s at 3/minute.
    assert 1 <= int(r.headers["retry-after"]) <= 20
    assert "sensorpipe_api_rate_limited_total 2.0" in api_client.get("/metrics").text


def test_last_used_is_recorded_and_keys_never_logged(
    db_url: str, api_settings: ApiSettings, api_keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(api_settings)) as c:
        c.get("/api/v1/models", headers=api_keys.headers("reports"))
        c.get("/api/v1/models", headers={"X-API-Key": api_keys.values["reports"] + "x"})
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT last_used_at, key_hash FROM api_keys WHERE name = 'test-reports'"
        ).fetchone()
    assert row is not None and row[0] is not None
    assert api_keys.values["reports"] not in row[1]  # stored hashed
    secret = api_keys.values["reports"].split("_", 2)[2]
    assert all(secret not in rec.getMessage() for rec in caplog.records)


def cli(argv: list[str]) -> int:
    """``sensorpipe keys ...`` as ``sensorpipe.__main__`` runs it (that module imports every
    command, some of which other work streams own)."""
    import argparse

    parser = argparse.ArgumentParser(prog="sensorpipe keys")
    keys_command.configure(parser)
    try:
        return keys_command.run(parser.parse_args(argv[1:]))
    except PipelineError as exc:
        sys.stderr.write(f"sensorpipe keys: {exc}\n")
        return 1


def test_keys_cli_create_list_revoke(
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    broker: MosquittoServer,
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("MQTT_URL", broker.url)
    assert (
        cli(
            [
                "keys",
                "create",
                "--name",
                "ops",
                "--scopes",
                "reports:read,ml:predict",
                "--rate-limit",
                "120",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    key = out.splitlines()[0]
    assert key.startswith("sp_") and "shown again" in out
    assert cli(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ops" in listing and "ml:predict,reports:read" in listing and "active" in listing
    assert key.split("_", 2)[2] not in listing  # the secret is never shown again
    assert cli(["keys", "create", "--name", "bad", "--scopes", "root"]) == 1
    assert "unknown: root" in capsys.readouterr().err
    assert cli(["keys", "revoke", "ops"]) == 0
    assert cli(["keys", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert cli(["keys", "revoke", "ops"]) == 1
