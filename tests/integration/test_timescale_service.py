"""The TimescaleDB path of the migrations on a real TimescaleDB server.

TimescaleDB is not installable on the development machines, so these tests run where one is
given: ``SENSORPIPE_TIMESCALE_URL`` (a superuser URL; the GitHub workflow points it at a
``timescale/timescaledb`` service container and sets ``SENSORPIPE_REQUIRE_TIMESCALE=1``, which
turns a missing server into a failure). Elsewhere they are skipped, and the Timescale SQL is only
reviewed as rendered text (``tests/integration/test_migrations.py``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from sensorpipe.migrate import downgrade, upgrade

pytestmark = pytest.mark.integration

URL = os.environ.get("SENSORPIPE_TIMESCALE_URL", "")
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)


@pytest.fixture
def ts_db() -> Iterator[str]:
    if not URL:
        if os.environ.get("SENSORPIPE_REQUIRE_TIMESCALE") == "1":
            pytest.fail("SENSORPIPE_REQUIRE_TIMESCALE=1 but SENSORPIPE_TIMESCALE_URL is not set")
        pytest.skip("no TimescaleDB server (set SENSORPIPE_TIMESCALE_URL)")
    name = f"ts_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(URL)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_migrations_build_the_hypertable_policies_and_continuous_aggregate(ts_db: str) -> None:
    upgrade(ts_db, timescale="on")
    with psycopg.connect(ts_db) as conn:
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        hypertables = conn.execute(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
        ).fetchall()
        assert ("sensor_readings", True) in hypertables
        caggs = conn.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
        ).fetchall()
        assert caggs == [("readings_1m", False)]
        jobs = {
            row[0]
            for row in conn.execute(
                "SELECT proc_name FROM timescaledb_information.jobs "
                "WHERE hypertable_name IS NOT NULL "
                "OR proc_name = 'policy_refresh_continuous_aggregate'"
            )
        }
        assert {
            "policy_compression",
            "policy_retention",
            "policy_refresh_continuous_aggregate",
        } <= jobs


def _store(conn: psycopg.Connection, n: int) -> None:
    conn.execute("INSERT INTO sensors (sensor_id) VALUES ('ts-1') ON CONFLICT DO NOTHING")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensor_readings (time, sensor_id, value) VALUES (%s, 'ts-1', %s) "
            "ON CONFLICT DO NOTHING",
            [(T0 + timedelta(seconds=i), float(i)) for i in range(n)],
        )


def test_idempotent_insert_and_the_rollup_on_timescale(ts_db: str) -> None:
    upgrade(ts_db, timescale="on")
    with psycopg.connect(ts_db, autocommit=True) as conn:
        _store(conn, 120)
        _store(conn, 120)  # a redelivery: no new rows
        assert conn.execute("SELECT count(*) FROM sensor_readings").fetchone() == (120,)
        # Real-time aggregate: correct before and after materialization.
        before = conn.execute(
            "SELECT n, min, max FROM readings_1m WHERE sensor_id = 'ts-1' ORDER BY bucket"
        ).fetchall()
        conn.execute("CALL refresh_continuous_aggregate('readings_1m', NULL, NULL)")
        after = conn.execute(
            "SELECT n, sum, min, max FROM readings_1m WHERE sensor_id = 'ts-1' ORDER BY bucket"
        ).fetchall()
    assert before == [(60, 0.0, 59.0), (60, 60.0, 119.0)]
    assert after == [
        (60, float(sum(range(60))), 0.0, 59.0),
        (60, float(sum(range(60, 120))), 60.0, 119.0),
    ]


def test_compressed_chunks_stay_readable(ts_db: str) -> None:
    upgrade(ts_db, timescale="on")
    with psycopg.connect(ts_db, autocommit=True) as conn:
        _store(conn, 60)
        compressed = conn.execute(
            "SELECT count(compress_chunk(c, if_not_compressed => true)) "
            "FROM show_chunks('sensor_readings') c"
        ).fetchone()
        assert compressed is not None and compressed[0] >= 1
        assert conn.execute(
            "SELECT count(*), max(value) FROM sensor_readings WHERE sensor_id = 'ts-1'"
        ).fetchone() == (60, 59.0)


def test_downgrade_and_upgrade_again(ts_db: str) -> None:
    upgrade(ts_db, timescale="on")
    downgrade(ts_db, "base", timescale="on")
    with psycopg.connect(ts_db) as conn:
        left = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        ).fetchall()
        assert left == []
    upgrade(ts_db, timescale="on")
