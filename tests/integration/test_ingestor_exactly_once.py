"""Exactly-once storage: at-least-once delivery into an idempotent table."""

from __future__ import annotations

import random
from datetime import timedelta

import psycopg
import pytest

from tests.integration._ingestor_harness import (
    Publisher,
    base_time,
    count_readings,
    payload,
    reading,
    running,
    settings_for,
    wait_until,
)
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration


def test_duplicates_are_stored_once(db_url: str, broker: MosquittoServer) -> None:
    """Done-when 1: N readings, some published twice (alone and inside arrays) → N rows."""
    rng = random.Random(1)
    t0 = base_time()
    sensors = [f"eo-{i}" for i in range(10)]
    distinct = [(s, t0 + timedelta(seconds=k)) for s in sensors for k in range(150)]
    pub = Publisher(broker.url)
    with running(settings_for(db_url, broker.url, ingest_batch_max_rows=200)) as ing:
        for s, t in distinct:
            pub.publish(f"sensors/{s}/readings", payload(reading(s, t, rng.random(), unit="Cel")))
        # Re-sends: 200 single messages and 10 arrays of 30 already-sent readings each.
        for s, t in rng.sample(distinct, 200):
            pub.publish(f"sensors/{s}/readings", payload(reading(s, t, 0.0)))
        for s in sensors:
            backlog = [reading(s, t0 + timedelta(seconds=k), 1.0) for k in range(30)]
            pub.publish(f"sensors/{s}/readings", payload(backlog))
        pub.wait_all()
        sent = len(distinct) + 200 + 10 * 30
        wait_until(
            lambda: (
                ing.metric("sensorpipe_ingestor_rows_written_total")
                + ing.metric("sensorpipe_ingestor_duplicates_skipped_total")
                >= sent
            ),
            20,
            "every reading to be processed",
        )
        assert count_readings(db_url, "eo-%") == len(distinct)
        assert ing.metric("sensorpipe_ingestor_rows_written_total") == len(distinct)
        assert ing.metric("sensorpipe_ingestor_duplicates_skipped_total") == 200 + 300
        wait_until(
            lambda: ing.metric("sensorpipe_ingestor_messages_acked_total") >= len(distinct) + 210,
            5,
            "acknowledgements",
        )
    pub.close()
    assert ing.exit_code == 0
    with psycopg.connect(db_url) as conn:
        sensors_rows = conn.execute(
            "SELECT sensor_id, unit, last_seen_at IS NOT NULL FROM sensors ORDER BY 1"
        ).fetchall()
        n, total = conn.execute("SELECT count(*), sum(n) FROM readings_1m").fetchone() or (0, 0)
    # Auto-registration took the unit from the first payload; the rollup counts each row once.
    assert sensors_rows == [(s, "Cel", True) for s in sorted(sensors)]
    assert total == len(distinct)
    assert n > 0
