"""A reading sent to ``/data/ingest`` is stored by the real ingestor, exactly like a device's,
and is then visible through the API's own read endpoints."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.integration._ingestor_harness import running, settings_for, wait_until
from tests.integration.api_support import Keys, iso
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration


def test_http_ingest_is_stored_by_the_ingestor(
    db_url: str, broker: MosquittoServer, api_client: TestClient, api_keys: Keys
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    batch = [
        {"sensor_id": "pl.1", "value": 10.0 + i, "timestamp": iso(now - timedelta(seconds=9 - i))}
        for i in range(10)
    ]
    with running(settings_for(db_url, broker.url)):
        r = api_client.post("/api/v1/data/ingest", json=batch, headers=api_keys.headers("ingest"))
        assert r.status_code == 202 and r.json()["accepted"] == 10
        # Sent twice without an Idempotency-Key: published twice, stored once (the table is
        # idempotent on (sensor_id, time), as for a device redelivering).
        again = api_client.post(
            "/api/v1/data/ingest", json=batch, headers=api_keys.headers("ingest")
        )
        assert again.status_code == 202

        def stored() -> list[float]:
            resp = api_client.get(
                "/api/v1/sensors/pl.1/readings",
                params={
                    "from": iso(now - timedelta(minutes=1)),
                    "to": iso(now + timedelta(minutes=1)),
                },
                headers=api_keys.headers("reports"),
            )
            return [p["value"] for p in resp.json()["items"]] if resp.status_code == 200 else []

        wait_until(lambda: len(stored()) >= 10, 20, "the ingestor to store the readings")
        time.sleep(0.3)  # the second publish, stored as a no-op, must not add rows
        assert stored() == [10.0 + i for i in range(10)]
