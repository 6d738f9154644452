"""EXPLAIN evidence for the hot queries, on a realistically sized database: ``docs/db/explain.md``.

Loads ``SENSORS`` sensors × one reading every ``STEP_S`` seconds over ``DAYS`` days (2 016 000
readings by default, the plain-PostgreSQL trigger maintaining ``readings_1m`` as it would in
production), plus anomaly events, rejected messages and idempotency keys, runs ``ANALYZE``, then
``EXPLAIN (ANALYZE, BUFFERS)`` of the statements the product runs — taken from the components'
``queries.py``, so the evidence follows the code. Writes inside a transaction are rolled back.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from api import queries as api_q
from ingestor import queries as ingest_q
from scorer import queries as scorer_q

SENSORS = 100
STEP_S = 30
DAYS = 7
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

LOAD = [
    """INSERT INTO sensors (sensor_id, sensor_type, unit, expected_interval_s, last_seen_at)
       SELECT format('load-%%s', lpad(g::text, 3, '0')), 'temperature', 'Cel', %(step)s, %(now)s
       FROM generate_series(1, %(sensors)s) g""",
    # Time-major, like live ingest (every sensor's reading of one tick lands together), so the
    # heap is ordered by time as in production; one statement, so the rollup trigger sees the
    # whole transition table at once, as a large backfill would.
    """INSERT INTO sensor_readings (time, sensor_id, value, received_at)
       SELECT t, s.sensor_id, 20 + 5 * sin(extract(epoch FROM t) / 13751) + random(),
              t + interval '40 ms'
       FROM generate_series(%(now)s - make_interval(days => %(days)s), %(now)s - interval '1 s',
                            make_interval(secs => %(step)s)) t,
            sensors s
       ORDER BY t, s.sensor_id""",
    """INSERT INTO anomaly_events (event_id, sensor_id, kind, state, severity, score, value,
                                   model_version, opened_at, updated_at, resolved_at, emitted_at)
       SELECT gen_random_uuid(), format('load-%%s', lpad((1 + g %% %(sensors)s)::text, 3, '0')),
              'anomaly', CASE WHEN g %% 50 = 0 THEN 'open' ELSE 'resolved' END,
              CASE WHEN g %% 3 = 0 THEN 'critical' ELSE 'warning' END, 0.9, 30,
              'anomaly_detector:v1', o, o, CASE WHEN g %% 50 = 0 THEN NULL ELSE o END, o
       FROM generate_series(1, 20000) g,
            LATERAL (SELECT %(now)s - g * interval '30 s' AS o) x""",
    """INSERT INTO rejected_messages (received_at, topic, payload, payload_bytes, reason, detail)
       SELECT %(now)s - g * interval '10 s', 'sensors/x/readings', '\\x7b7d', 2,
              (ARRAY['invalid_value', 'malformed_json', 'too_old'])[1 + g %% 3], 'generated'
       FROM generate_series(1, 50000) g""",
    """INSERT INTO api_keys (name, prefix, key_hash, scopes)
       SELECT 'key-' || g, 'p' || g, md5(g::text), '{data:ingest}' FROM generate_series(1, 10) g""",
    """INSERT INTO idempotency_keys (api_key_id, key, request_sha256, status_code, response,
                                     expires_at)
       SELECT 1 + g %% 10, 'idem-' || g, md5(g::text), 200, '{}', %(now)s - interval '12 h'
              + g * interval '5 s'
       FROM generate_series(1, 20000) g""",
]


@dataclass(frozen=True)
class Case:
    title: str
    source: str
    sql: str
    params: dict[str, Any] | list[Any]
    why: str
    write: bool = False


def cases() -> list[Case]:
    one = "load-042"
    all_ids = [f"load-{i:03d}" for i in range(1, SENSORS + 1)]
    hour = {"start": NOW - timedelta(hours=1), "end": NOW}
    return [
        Case(
            "Raw readings of one sensor, last hour",
            "api.queries.RAW_READINGS",
            api_q.RAW_READINGS,
            {"sensor_id": one, **hour, "limit": 10000},
            "primary key (sensor_id, time): one index range scan",
        ),
        Case(
            "Latest readings of one sensor (forecast input)",
            "api.queries.RECENT_HISTORY",
            api_q.RECENT_HISTORY,
            [one, 500],
            "primary key scanned backwards, stops after LIMIT rows",
        ),
        Case(
            "Warm start of a scorer shard (100 sensors, last day, 500 each)",
            "scorer.queries.WARM_START_READINGS",
            scorer_q.WARM_START_READINGS,
            {"sensor_ids": all_ids, "since": NOW - timedelta(days=1), "limit": 500},
            "one backward primary-key range scan per sensor (LATERAL)",
        ),
        Case(
            "Bucketed chart of one sensor, 24 h in 5-minute buckets",
            "api.queries.BUCKETED_READINGS",
            api_q.BUCKETED_READINGS,
            {
                "sensor_id": one,
                "start": NOW - timedelta(days=1),
                "end": NOW,
                "width": timedelta(minutes=5),
                "limit": 1000,
            },
            "readings_1m primary key (sensor_id, bucket): 1 440 rollup rows, not 2 880 readings",
        ),
        Case(
            "Aggregates of every sensor, last hour, 1-minute buckets",
            "api.queries.AGGREGATES",
            api_q.AGGREGATES,
            {"sensor_id": None, **hour, "width": timedelta(minutes=1), "limit": 10000},
            "readings_1m by bucket range across sensors",
        ),
        Case(
            "Sensor list with latest reading",
            "api.queries.LIST_SENSORS",
            api_q.LIST_SENSORS,
            {"after": None, "sensor_type": None, "device_id": None, "limit": 100},
            "sensors primary key + one backward primary-key probe of sensor_readings per sensor",
        ),
        Case(
            "Per-sensor report over the last hour",
            "api.queries.SUMMARY",
            api_q.SUMMARY,
            {"sensor_id": None, **hour},
            "sensor_readings_time_idx for the time window across all sensors",
        ),
        Case(
            "Anomalies of the last 7 days, newest first",
            "api.queries.LIST_ANOMALIES",
            api_q.LIST_ANOMALIES,
            {
                "start": NOW - timedelta(days=7),
                "end": NOW,
                "sensor_id": None,
                "state": None,
                "severity": None,
                "kind": None,
                "c_time": None,
                "c_id": None,
                "limit": 100,
            },
            "anomaly_events_opened_idx read backwards, stops after LIMIT rows",
        ),
        Case(
            "Anomalies of one sensor",
            "api.queries.LIST_ANOMALIES",
            api_q.LIST_ANOMALIES,
            {
                "start": NOW - timedelta(days=7),
                "end": NOW,
                "sensor_id": one,
                "state": None,
                "severity": None,
                "kind": None,
                "c_time": None,
                "c_id": None,
                "limit": 100,
            },
            "anomaly_events_sensor_opened_idx (sensor_id, opened_at DESC)",
        ),
        Case(
            "Open alerts (scorer start)",
            "scorer.queries.OPEN_ALERTS",
            scorer_q.OPEN_ALERTS,
            [],
            "partial index anomaly_events_open_idx WHERE state = 'open'",
        ),
        Case(
            "Ingest: move a staged batch of 1 000 readings (500 of them redelivered)",
            "ingestor.queries.MOVE_STAGED",
            ingest_q.MOVE_STAGED,
            [],
            "primary key as conflict arbiter; the rollup trigger runs once per statement",
            write=True,
        ),
        Case(
            "Purge expired idempotency keys",
            "api.queries.PURGE_IDEMPOTENCY_KEYS",
            api_q.PURGE_IDEMPOTENCY_KEYS,
            [],
            "idempotency_keys_expires_idx",
            write=True,
        ),
    ]


def load(conn: psycopg.Connection, *, quick: bool) -> dict[str, Any]:
    params = {"sensors": SENSORS, "step": STEP_S, "days": 1 if quick else DAYS, "now": NOW}
    started = time.monotonic()
    for sql in LOAD:
        conn.execute(sql, params)
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    conn.autocommit = False
    sizes = conn.execute(
        """SELECT relname, n_live_tup, pg_size_pretty(pg_total_relation_size(relid))
           FROM pg_stat_user_tables ORDER BY relname"""
    ).fetchall()
    return {"seconds": time.monotonic() - started, "sizes": sizes, **params}


def _prepare_ingest(conn: psycopg.Connection) -> None:
    conn.execute(ingest_q.CREATE_STAGING)
    conn.execute(
        """INSERT INTO ingest_staging
           SELECT %(now)s - interval '1 s' * (g * 30 - 15000), 'load-007', 1.5, %(now)s
           FROM generate_series(1, 1000) g""",
        {"now": NOW},
    )


def explain(conn: psycopg.Connection, case: Case) -> tuple[str, float]:
    if "ingest_staging" in case.sql:
        _prepare_ingest(conn)
    rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {case.sql}", case.params).fetchall()
    conn.rollback()  # writes are measured, never kept
    plan = "\n".join(r[0] for r in rows)
    m = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return plan, float(m[1]) if m else float("nan")


def access_paths(plan: str) -> str:
    found = re.findall(
        r"((?:Index Only Scan|Index Scan|Bitmap Index Scan|Seq Scan)"
        r"(?: Backward)?(?: using \w+)? on \w+)",
        plan,
    )
    seen: list[str] = []
    for f in found:
        if f not in seen:
            seen.append(f)
    return "; ".join(seen) or "-"


def run(dsn: str, out: Path, *, quick: bool = False) -> Path:
    with psycopg.connect(dsn) as conn:
        info = load(conn, quick=quick)
        results = [(c, *explain(conn, c)) for c in cases()]
        version = conn.execute("SHOW server_version").fetchone()
    out.write_text(render(info, results, str(version[0] if version else "?")))
    return out


def render(info: dict[str, Any], results: list[tuple[Case, str, float]], version: str) -> str:
    lines = [
        "# EXPLAIN evidence for the hot queries",
        "",
        "Generated by `python -m scripts.db_docs explain` (see `docs/db/README.md`); timings",
        "depend on the machine, the plans on the schema and the data sizes below.",
        "",
        f"PostgreSQL {version}, plain path (trigger-maintained `readings_1m`), default settings",
        f"of `tests/servers.py` (shared_buffers 128MB). Data: {info['sensors']} sensors, one",
        f"reading every {info['step']} s for {info['days']} days, loaded in "
        f"{info['seconds']:.0f} s (including the rollup trigger):",
        "",
        "| table | rows | size |",
        "|---|---:|---:|",
        *(f"| `{name}` | {n:,} | {size} |" for name, n, size in info["sizes"]),
        "",
        "| query | source | access path | execution |",
        "|---|---|---|---:|",
    ]
    for case, plan, ms in results:
        lines.append(f"| {case.title} | `{case.source}` | {access_paths(plan)} | {ms:.2f} ms |")
    for case, plan, _ in results:
        lines += [
            "",
            f"## {case.title}",
            "",
            f"`{case.source}` — {case.why}.",
            "",
            "```sql",
            case.sql.strip(),
            "```",
            "",
            "```",
            plan,
            "```",
        ]
    return "\n".join(lines) + "\n"
