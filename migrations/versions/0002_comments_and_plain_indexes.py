"""Schema comments on every table and column; plain-PostgreSQL indexes fixed by EXPLAIN.

Comments: every table and column says what it holds, in the database itself. ``COMMENT ON`` is
metadata only (a brief catalog update, no rewrite). The comments travel with the schema:
``psql \\d+``, ``pg_dump`` (``docs/db/schema.sql``), the ERD notes and BI tools (Metabase,
Superset, Grafana's query builder) all show them. The longer data dictionary is
``docs/db/README.md``.

Indexes, plain PostgreSQL only (evidence in ``docs/db/README.md`` and ``docs/db/explain.md``,
measured on 2 M readings):

* ``sensor_readings_time_idx`` (B-tree on ``time DESC``) lured the planner into scanning every
  sensor's recent rows and filtering on ``sensor_id`` for the per-sensor "latest N readings"
  queries (scorer warm start: 1.0 s instead of 70 ms), because it matches their ``ORDER BY``. It
  is replaced by a BRIN index on ``time``: readings arrive in time order, so block ranges are
  tight; BRIN serves the cross-sensor time-range scans (reports, retention deletes) at 24 kB
  instead of ~45 MB, and cannot be used for ordering, so per-sensor queries take the primary key.
* ``readings_1m_bucket_idx``: the cross-sensor aggregates read a ``bucket`` range of every
  sensor, which the ``(sensor_id, bucket)`` primary key cannot serve (a sequential scan).

Under TimescaleDB neither applies: chunks are excluded by time and each chunk has its own time
index, and the continuous aggregate's materialization hypertable is indexed on ``bucket``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import op

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timescale import use_timescale

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES: dict[str, str] = {
    "sensors": "Sensor registry: one row per sensor id, auto-registered on first reading.",
    "sensor_readings": "Narrow time series: one row per (sensor_id, time); idempotent ingest.",
    "anomaly_events": "One row per alert incident (stable event_id), updated as it evolves.",
    "rejected_messages": "Every payload or batch item the pipeline refused, with the reason.",
    "api_keys": "HTTP API keys: only a SHA-256 hash is stored, with scopes and rate limit.",
    "idempotency_keys": "Stored answers of POST requests sent with an Idempotency-Key header.",
    "readings_1m": "1-minute rollups of sensor_readings (n, sum, sum_sq, min, max), exact.",
}

COLUMNS: dict[str, dict[str, str]] = {
    "sensors": {
        "sensor_id": "Sensor id, ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$; also the MQTT topic level.",
        "device_id": "Physical device carrying the sensor (several sensors per device); ACLs.",
        "sensor_type": "Kind of quantity: temperature, humidity, pressure, vibration, power, ...",
        "unit": "SenML unit name of value (Cel, %RH, hPa, m/s2, W, l/s, ...).",
        "location": "Free-text location (site, building, line).",
        "description": "Free-text description.",
        "valid_min": "Lowest physically valid value, in unit (NULL = unbounded).",
        "valid_max": "Highest physically valid value, in unit (NULL = unbounded).",
        "expected_interval_s": "Expected seconds between readings; dead-man and gap detection.",
        "created_at": "When the sensor was registered.",
        "last_seen_at": "Receive time of the latest ingested batch holding this sensor.",
    },
    "sensor_readings": {
        "time": "Device timestamp of the reading (UTC).",
        "sensor_id": "Sensor that produced the reading (FK sensors).",
        "value": "Measured value, finite, in the sensor's unit.",
        "received_at": "Pipeline receive time (ingest latency = received_at - time).",
    },
    "anomaly_events": {
        "event_id": "Stable incident id (uuid5 of sensor and opening time): re-emits upsert.",
        "sensor_id": "Sensor the incident belongs to (FK sensors).",
        "kind": "anomaly (detector score) or deadman (sensor went silent).",
        "state": "open until the alert state machine resolves it, then resolved.",
        "severity": "warning or critical; only escalates during an incident.",
        "score": "Peak anomaly score of the incident, 0..1.",
        "value": "Reading value at the peak score, in the sensor's unit.",
        "expected": "Forecast value at the peak, in the sensor's unit.",
        "lower": "Lower bound of the prediction interval at the peak.",
        "upper": "Upper bound of the prediction interval at the peak.",
        "detectors": "Per-detector scores at the peak, {detector name: 0..1}.",
        "model_version": "Model that scored it, e.g. anomaly_detector:v3.",
        "opened_at": "Time of the reading that opened the incident.",
        "updated_at": "Time of the latest reading that changed the incident.",
        "resolved_at": "Time the incident resolved; required when state = resolved.",
        "emitted_at": "When the scorer last published the event on alerts/<sensor_id>.",
    },
    "rejected_messages": {
        "id": "Surrogate key (identity).",
        "received_at": "When the message was received.",
        "source": "mqtt or http.",
        "topic": "MQTT topic, or the HTTP path.",
        "payload": "Raw payload bytes, truncated to a size limit.",
        "payload_bytes": "Size of the original payload in bytes (before truncation).",
        "item_index": "Index of the refused item inside a batch; NULL = whole message.",
        "reason": "Short reason code (core.wire.iter_reason_codes), e.g. invalid_value.",
        "detail": "Human-readable detail of the rejection.",
    },
    "api_keys": {
        "id": "Surrogate key (identity).",
        "name": "Unique, human-chosen key name (used to revoke).",
        "prefix": "Visible part of the key (sp_<prefix>_<secret>): finds the row.",
        "key_hash": "SHA-256 hex digest of the whole key; the key itself is never stored.",
        "scopes": "Granted scopes: data:ingest, reports:read, ml:predict, admin.",
        "rate_limit_per_min": "Requests per minute allowed for this key.",
        "created_at": "When the key was created.",
        "last_used_at": "Latest authenticated use (updated in batches).",
        "revoked_at": "When the key was revoked; NULL = active.",
    },
    "idempotency_keys": {
        "api_key_id": "Key that made the request (FK api_keys, cascade delete).",
        "key": "Idempotency-Key header value, 1..255 characters.",
        "request_sha256": "SHA-256 of the request; a replay with another body is refused.",
        "status_code": "HTTP status of the stored answer; 0 = request still in progress.",
        "response": "Stored JSON answer, replayed for a repeated request.",
        "created_at": "When the request was first seen.",
        "expires_at": "After this the key may be reused and the row purged.",
    },
    "readings_1m": {
        "sensor_id": "Sensor of the bucket.",
        "bucket": "Start of the 1-minute bucket (UTC).",
        "n": "Number of readings in the bucket.",
        "sum": "Sum of values (mean = sum / n).",
        "sum_sq": "Sum of squared values (variance = sum_sq/n - mean^2).",
        "min": "Smallest value in the bucket.",
        "max": "Largest value in the bucket.",
    },
}


def _quote(text: str | None) -> str:
    return "NULL" if text is None else "'" + text.replace("'", "''") + "'"


def _statements(clear: bool) -> list[str]:
    rollup_kind = "MATERIALIZED VIEW" if use_timescale() else "TABLE"
    out = []
    for table, note in TABLES.items():
        kind = rollup_kind if table == "readings_1m" else "TABLE"
        out.append(f"COMMENT ON {kind} {table} IS {_quote(None if clear else note)}")
        for column, text in COLUMNS[table].items():
            out.append(f"COMMENT ON COLUMN {table}.{column} IS {_quote(None if clear else text)}")
    return out


PLAIN_INDEXES = """
DROP INDEX sensor_readings_time_idx;
CREATE INDEX sensor_readings_time_brin ON sensor_readings USING brin (time)
    WITH (autosummarize = on);
CREATE INDEX readings_1m_bucket_idx ON readings_1m (bucket)
"""

PLAIN_INDEXES_DOWN = """
DROP INDEX readings_1m_bucket_idx;
DROP INDEX sensor_readings_time_brin;
CREATE INDEX sensor_readings_time_idx ON sensor_readings (time DESC)
"""


def upgrade() -> None:
    op.execute(";\n".join(_statements(clear=False)))
    if not use_timescale():
        op.execute(PLAIN_INDEXES)


def downgrade() -> None:
    if not use_timescale():
        op.execute(PLAIN_INDEXES_DOWN)
    op.execute(";\n".join(_statements(clear=True)))
