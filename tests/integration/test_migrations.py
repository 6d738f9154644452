"""Alembic migrations on a real PostgreSQL: upgrade → downgrade → upgrade, keys and constraints,
the plain-PostgreSQL rollup, the rendered TimescaleDB path, and the ``sensorpipe migrate`` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from alembic.script import ScriptDirectory

from sensorpipe.migrate import alembic_config, downgrade, render_sql, upgrade
from tests.servers import REPO, PgServer

pytestmark = pytest.mark.integration

TABLES = {
    "sensors",
    "sensor_readings",
    "anomaly_events",
    "rejected_messages",
    "api_keys",
    "idempotency_keys",
    "readings_1m",
}
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture
def empty_db(pg_server: PgServer) -> str:
    return pg_server.create_db(f"mig_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


def schema_snapshot(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    """Everything a migration defines in ``public``: columns, constraints, indexes, triggers."""
    queries = {
        "columns": """
            SELECT table_name, column_name, data_type, is_nullable, column_default
            FROM information_schema.columns WHERE table_schema = 'public'
            ORDER BY 1, 2""",
        "constraints": """
            SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid)
            FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2, 3""",
        "indexes": """
            SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'
            ORDER BY 1, 2""",
        "triggers": """
            SELECT tgrelid::regclass::text, tgname FROM pg_trigger
            WHERE NOT tgisinternal ORDER BY 1, 2""",
        "functions": """
            SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1""",
        "comments": """
            SELECT c.relname, a.attname, col_description(c.oid, a.attnum),
                   obj_description(c.oid, 'pg_class')
            FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'm')
            ORDER BY 1, 2""",
    }
    with psycopg.connect(dsn) as c:
        return {k: c.execute(q).fetchall() for k, q in queries.items()}


def revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused/db"))
    assert len(script.get_heads()) == 1, f"migrations have several heads: {script.get_heads()}"
    return [r.revision for r in script.walk_revisions()]


def head() -> str:
    return revisions()[0]


def test_every_table_and_column_is_commented(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        rows = c.execute(
            """SELECT c.relname, a.attname, col_description(c.oid, a.attnum),
                      obj_description(c.oid, 'pg_class')
               FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
               WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'm')
                 AND NOT a.attisdropped AND c.relname <> 'alembic_version'"""
        ).fetchall()
    assert {r[0] for r in rows} == TABLES
    hint = "add COMMENT ON ... in the migration (as 0002 does) and describe it in docs/db"
    assert [(t, col) for t, col, comment, _ in rows if not comment] == [], hint
    assert [t for t, _, _, table_comment in rows if not table_comment] == [], hint


def test_plain_path_time_indexes(db_url: str) -> None:
    """0002: BRIN on the readings' time (no B-tree to lure per-sensor queries), B-tree on the
    rollups' bucket (cross-sensor ranges)."""
    with psycopg.connect(db_url) as c:
        defs: dict[str, str] = dict(
            c.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN"
                " ('sensor_readings', 'readings_1m')"
            ).fetchall()
        )
    assert defs.keys() == {
        "sensor_readings_pkey",
        "sensor_readings_time_brin",
        "readings_1m_pkey",
        "readings_1m_bucket_idx",
    }
    assert 'USING brin ("time")' in defs["sensor_readings_time_brin"]
    assert defs["readings_1m_bucket_idx"].endswith("USING btree (bucket)")


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as c:
        rows = c.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " UNION SELECT matviewname FROM pg_matviews WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def test_upgrade_downgrade_upgrade(empty_db: str) -> None:
    assert tables(empty_db) == set()
    upgrade(empty_db)
    assert tables(empty_db) == TABLES | {"alembic_version"}
    first = schema_snapshot(empty_db)
    with psycopg.connect(empty_db) as c:
        assert c.execute("SELECT version_num FROM alembic_version").fetchone() == (head(),)

    # One revision at a time: every downgrade step must run and change the schema.
    seen = [first]
    while True:
        with psycopg.connect(empty_db) as c:
            if c.execute("SELECT count(*) FROM alembic_version").fetchone() == (0,):
                break
        downgrade(empty_db, "-1")
        step = schema_snapshot(empty_db)
        assert step != seen[-1]
        seen.append(step)
    assert len(seen) == len(revisions()) + 1
    assert tables(empty_db) == {"alembic_version"}
    after_down = schema_snapshot(empty_db)
    assert after_down["functions"] == [] and after_down["triggers"] == []
    with psycopg.connect(empty_db) as c:
        assert c.execute("SELECT count(*) FROM alembic_version").fetchone() == (0,)

    upgrade(empty_db)
    assert schema_snapshot(empty_db) == first


def test_primary_and_foreign_keys(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        rows = c.execute(
            """SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid)
               FROM pg_constraint
               WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'f', 'u')"""
        ).fetchall()
    keys = {(t, k, d) for t, k, d in rows}
    assert {
        ("sensors", "p", "PRIMARY KEY (sensor_id)"),
        ("sensor_readings", "p", 'PRIMARY KEY (sensor_id, "time")'),
        ("anomaly_events", "p", "PRIMARY KEY (event_id)"),
        ("rejected_messages", "p", "PRIMARY KEY (id)"),
        ("api_keys", "p", "PRIMARY KEY (id)"),
        ("idempotency_keys", "p", "PRIMARY KEY (api_key_id, key)"),
        ("readings_1m", "p", "PRIMARY KEY (sensor_id, bucket)"),
        ("sensor_readings", "f", "FOREIGN KEY (sensor_id) REFERENCES sensors(sensor_id)"),
        ("anomaly_events", "f", "FOREIGN KEY (sensor_id) REFERENCES sensors(sensor_id)"),
        (
            "idempotency_keys",
            "f",
            "FOREIGN KEY (api_key_id) REFERENCES api_keys(id) ON DELETE CASCADE",
        ),
        ("api_keys", "u", "UNIQUE (name)"),
        ("api_keys", "u", "UNIQUE (prefix)"),
    } <= keys


def add_sensor(c: psycopg.Connection, sid: str = "s-1", **cols: object) -> None:
    names = ["sensor_id", *cols]
    c.execute(
        f"INSERT INTO sensors ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
        [sid, *cols.values()],
    )


def test_readings_reference_a_registered_sensor_once_per_time(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, value) VALUES (%s, 'x', 1)", [T0]
        )
    add_sensor(conn)
    conn.execute("INSERT INTO sensor_readings (time, sensor_id, value) VALUES (%s, 's-1', 1)", [T0])
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, value) VALUES (%s, 's-1', 2)", [T0]
        )
    row = conn.execute("SELECT value, received_at IS NOT NULL FROM sensor_readings").fetchone()
    assert row == (1.0, True)


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("INSERT INTO sensors (sensor_id) VALUES (%s)", ["bad/id"]),
        ("INSERT INTO sensors (sensor_id) VALUES (%s)", ["x" * 65]),
        ("INSERT INTO sensors (sensor_id, valid_min, valid_max) VALUES ('a', 2, 1)", []),
        ("INSERT INTO sensors (sensor_id, expected_interval_s) VALUES ('a', 0)", []),
        (
            "INSERT INTO rejected_messages (topic, payload, payload_bytes, reason, detail, source)"
            " VALUES ('t', '', -1, 'r', 'd', 'mqtt')",
            [],
        ),
        (
            "INSERT INTO rejected_messages (topic, payload, payload_bytes, reason, detail, source)"
            " VALUES ('t', '', 0, 'r', 'd', 'carrier-pigeon')",
            [],
        ),
        (
            "INSERT INTO api_keys (name, prefix, key_hash, scopes) VALUES ('k', 'p', 'h', %s)",
            [["data:ingest", "root"]],
        ),
        (
            "INSERT INTO api_keys (name, prefix, key_hash, scopes, rate_limit_per_min)"
            " VALUES ('k', 'p', 'h', '{admin}', 0)",
            [],
        ),
    ],
)
def test_check_constraints(conn: psycopg.Connection, sql: str, params: list[object]) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(sql, params)


def insert_event(c: psycopg.Connection, **over: object) -> None:
    row: dict[str, object] = {
        "event_id": uuid.uuid4(),
        "sensor_id": "s-1",
        "state": "open",
        "severity": "critical",
        "score": 0.9,
        "model_version": "anomaly_detector:v1",
        "opened_at": T0,
        "updated_at": T0,
        "emitted_at": T0,
    }
    row.update(over)
    c.execute(
        f"INSERT INTO anomaly_events ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
        list(row.values()),
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"state": "closed"},
        {"severity": "info"},
        {"score": 1.01},
        {"score": -0.1},
        {"kind": "gremlin"},
        {"state": "resolved"},  # resolved without resolved_at
    ],
)
def test_anomaly_event_constraints(conn: psycopg.Connection, bad: dict[str, object]) -> None:
    add_sensor(conn)
    insert_event(conn)  # the valid baseline
    with pytest.raises(psycopg.errors.CheckViolation):
        insert_event(conn, **bad)


def test_anomaly_event_is_stored_once_and_defaults(conn: psycopg.Connection) -> None:
    add_sensor(conn)
    eid = uuid.uuid4()
    insert_event(conn, event_id=eid, state="resolved", resolved_at=T0 + timedelta(minutes=3))
    with pytest.raises(psycopg.errors.UniqueViolation):
        insert_event(conn, event_id=eid)
    assert conn.execute("SELECT kind, detectors FROM anomaly_events").fetchone() == ("anomaly", {})
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        insert_event(conn, sensor_id="unknown")


def test_idempotency_keys_belong_to_an_api_key(conn: psycopg.Connection) -> None:
    key_id = conn.execute(
        "INSERT INTO api_keys (name, prefix, key_hash, scopes)"
        " VALUES ('ci', 'sp_ab', 'sha256$x', '{data:ingest}') RETURNING id"
    ).fetchone()
    assert key_id is not None
    ins = (
        "INSERT INTO idempotency_keys (api_key_id, key, request_sha256, status_code, response,"
        " expires_at) VALUES (%s, %s, 'h', 200, '{}', now() + interval '1 day')"
    )
    conn.execute(ins, [key_id[0], "k-1"])
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(ins, [key_id[0], "k-1"])
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(ins, [key_id[0], ""])
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(ins, [key_id[0] + 1000, "k-2"])
    conn.execute("DELETE FROM api_keys WHERE id = %s", key_id)
    assert conn.execute("SELECT count(*) FROM idempotency_keys").fetchone() == (0,)


ROLLUP_CHECK = """
SELECT r.sensor_id, r.bucket, r.n, r.sum, r.sum_sq, r.min, r.max,
       a.n, a.sum, a.sum_sq, a.min, a.max
FROM readings_1m r
FULL JOIN (
    SELECT sensor_id, date_trunc('minute', time) AS bucket, count(*) AS n, sum(value) AS sum,
           sum(value * value) AS sum_sq, min(value) AS min, max(value) AS max
    FROM sensor_readings GROUP BY 1, 2
) a USING (sensor_id, bucket)
"""


def assert_rollup_exact(c: psycopg.Connection) -> int:
    rows = c.execute(ROLLUP_CHECK).fetchall()
    for row in rows:
        got, want = row[2:7], row[7:12]
        assert got[0] == want[0] and got[3:] == want[3:], row
        assert got[1] == pytest.approx(want[1]) and got[2] == pytest.approx(want[2]), row
    return len(rows)


def test_rollup_stays_exact_under_redelivery(conn: psycopg.Connection) -> None:
    for sid in ("s-1", "s-2"):
        add_sensor(conn, sid)
    ins = (
        "INSERT INTO sensor_readings (time, sensor_id, value) "
        "SELECT %s::timestamptz + make_interval(secs => g * 7), %s, (g %% 13) - 4.5 "
        "FROM generate_series(%s::int, %s::int) g ON CONFLICT (sensor_id, time) DO NOTHING"
    )
    conn.execute(ins, [T0, "s-1", 0, 99])  # 100 readings over ~12 minutes
    conn.execute(ins, [T0, "s-2", 0, 49])
    first = assert_rollup_exact(conn)
    assert first >= 12
    # Redelivery: the same readings again, overlapping with new ones, in one statement and in
    # several; the trigger must see only the rows really inserted.
    conn.execute(ins, [T0, "s-1", 50, 149])
    conn.execute(ins, [T0, "s-2", 0, 49])
    with conn.transaction():
        for g in range(140, 160):
            conn.execute(ins, [T0, "s-1", g, g])
    assert assert_rollup_exact(conn) > first
    n = conn.execute("SELECT sum(n) FROM readings_1m WHERE sensor_id = 's-1'").fetchone()
    assert n == (160,)


def test_rollup_via_copy_staging_like_the_ingestor(conn: psycopg.Connection) -> None:
    add_sensor(conn)
    conn.execute("CREATE TEMP TABLE stage (time timestamptz, sensor_id text, value float8)")
    for attempt in range(2):  # the second attempt is a full redelivery of the same batch
        conn.execute("TRUNCATE stage")
        with conn.cursor().copy("COPY stage (time, sensor_id, value) FROM STDIN") as cp:
            for k in range(120):
                cp.write_row((T0 + timedelta(seconds=k), "s-1", float(k + attempt)))
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, value) SELECT * FROM stage "
            "ON CONFLICT DO NOTHING"
        )
    assert assert_rollup_exact(conn) == 2
    assert conn.execute("SELECT n, min, max FROM readings_1m ORDER BY bucket").fetchall() == [
        (60, 0.0, 59.0),
        (60, 60.0, 119.0),
    ]


TIMESCALE_MARKERS = (
    "CREATE EXTENSION IF NOT EXISTS timescaledb",
    "create_hypertable('sensor_readings', 'time'",
    "timescaledb.compress_segmentby = 'sensor_id'",
    "add_compression_policy('sensor_readings', INTERVAL '7 days')",
    "add_retention_policy('sensor_readings', INTERVAL '180 days')",
    "timescaledb.continuous",
    "time_bucket(INTERVAL '1 minute', time)",
    "add_continuous_aggregate_policy('readings_1m'",
)


def test_rendered_timescale_sql_is_reviewable() -> None:
    on = render_sql(timescale="on")
    off = render_sql(timescale="off")
    for marker in TIMESCALE_MARKERS:
        assert marker in on, marker
        assert marker not in off, marker
    assert "CREATE TRIGGER sensor_readings_rollup" in off
    assert "CREATE TRIGGER" not in on
    # The hypertable of a continuous aggregate is indexed on its bucket already.
    for plain_only in ("readings_1m_bucket_idx", "sensor_readings_time_brin"):
        assert plain_only in off and plain_only not in on
    assert "COMMENT ON MATERIALIZED VIEW readings_1m IS" in on
    assert "COMMENT ON TABLE readings_1m IS" in off
    for table in TABLES - {"readings_1m"}:
        assert f"CREATE TABLE {table} (" in on and f"CREATE TABLE {table} (" in off


def test_cli_migrate(empty_db: str, tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MQTT_URL")}
    env["DATABASE_URL"] = empty_db
    # No MQTT_URL: `migrate` only needs the database.
    run = subprocess.run(
        [sys.executable, "-m", "sensorpipe", "migrate", "--wait-s", "10"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "head" in run.stdout
    assert tables(empty_db) == TABLES | {"alembic_version"}
    sql = subprocess.run(
        [sys.executable, "-m", "sensorpipe", "migrate", "--sql", "--timescale", "on"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sql.returncode == 0, sql.stderr
    assert "add_retention_policy('sensor_readings', INTERVAL '180 days')" in sql.stdout
