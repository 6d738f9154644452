"""Initial schema: registry, readings, 1-minute rollups, anomaly events, rejects, API keys.

Every table exists on plain PostgreSQL 15. With TimescaleDB available, ``sensor_readings`` becomes
a hypertable with compression (after 7 days) and retention (180 days), and ``readings_1m`` is a
continuous aggregate; without it, ``readings_1m`` is a table kept exact by a statement-level
trigger. Both expose the same columns, so every product query runs on both.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import op

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timescale import use_timescale

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SENSOR_ID_CHECK = r"sensor_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'"

TABLES = f"""
CREATE TABLE sensors (
    sensor_id           text PRIMARY KEY CHECK ({SENSOR_ID_CHECK}),
    device_id           text,
    sensor_type         text,
    unit                text,
    location            text,
    description         text,
    valid_min           double precision,
    valid_max           double precision,
    expected_interval_s double precision CHECK (expected_interval_s > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz,
    CHECK (valid_min IS NULL OR valid_max IS NULL OR valid_min <= valid_max)
);
CREATE INDEX sensors_device_id_idx ON sensors (device_id) WHERE device_id IS NOT NULL;

CREATE TABLE sensor_readings (
    time        timestamptz      NOT NULL,
    sensor_id   text             NOT NULL REFERENCES sensors (sensor_id),
    value       double precision NOT NULL,
    received_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, time)
);
CREATE INDEX sensor_readings_time_idx ON sensor_readings (time DESC);

CREATE TABLE anomaly_events (
    event_id      uuid PRIMARY KEY,
    sensor_id     text        NOT NULL REFERENCES sensors (sensor_id),
    kind          text        NOT NULL DEFAULT 'anomaly' CHECK (kind IN ('anomaly', 'deadman')),
    state         text        NOT NULL CHECK (state IN ('open', 'resolved')),
    severity      text        NOT NULL CHECK (severity IN ('warning', 'critical')),
    score         double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    value         double precision,
    expected      double precision,
    lower         double precision,
    upper         double precision,
    detectors     jsonb       NOT NULL DEFAULT '{{}}'::jsonb,
    model_version text        NOT NULL,
    opened_at     timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    resolved_at   timestamptz,
    emitted_at    timestamptz NOT NULL,
    CHECK (state = 'open' OR resolved_at IS NOT NULL)
);
CREATE INDEX anomaly_events_sensor_opened_idx ON anomaly_events (sensor_id, opened_at DESC);
CREATE INDEX anomaly_events_opened_idx ON anomaly_events (opened_at DESC);
CREATE INDEX anomaly_events_open_idx ON anomaly_events (sensor_id) WHERE state = 'open';

CREATE TABLE rejected_messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at   timestamptz NOT NULL DEFAULT now(),
    source        text        NOT NULL DEFAULT 'mqtt' CHECK (source IN ('mqtt', 'http')),
    topic         text        NOT NULL,
    payload       bytea       NOT NULL,
    payload_bytes integer     NOT NULL CHECK (payload_bytes >= 0),
    item_index    integer,
    reason        text        NOT NULL,
    detail        text        NOT NULL
);
CREATE INDEX rejected_messages_received_idx ON rejected_messages (received_at DESC);
CREATE INDEX rejected_messages_reason_idx ON rejected_messages (reason, received_at DESC);

CREATE TABLE api_keys (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text        NOT NULL UNIQUE,
    prefix              text        NOT NULL UNIQUE,
    key_hash            text        NOT NULL,
    scopes              text[]      NOT NULL
        CHECK (scopes <@ ARRAY['data:ingest', 'reports:read', 'ml:predict', 'admin']::text[]),
    rate_limit_per_min  integer     NOT NULL DEFAULT 600 CHECK (rate_limit_per_min > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_used_at        timestamptz,
    revoked_at          timestamptz
);

CREATE TABLE idempotency_keys (
    api_key_id     bigint      NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    key            text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_sha256 text        NOT NULL,
    status_code    integer     NOT NULL,
    response       jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    PRIMARY KEY (api_key_id, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
"""

# Plain PostgreSQL: a rollup table kept exact by a statement-level trigger. The transition table
# holds only rows really inserted, so a redelivered reading (ON CONFLICT DO NOTHING) is not
# counted twice, and one batch costs one aggregated upsert rather than one per row.
PLAIN_ROLLUP = """
CREATE TABLE readings_1m (
    sensor_id text             NOT NULL,
    bucket    timestamptz      NOT NULL,
    n         bigint           NOT NULL,
    sum       double precision NOT NULL,
    sum_sq    double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    PRIMARY KEY (sensor_id, bucket)
);

CREATE FUNCTION readings_1m_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO readings_1m AS r (sensor_id, bucket, n, sum, sum_sq, min, max)
    SELECT sensor_id, date_trunc('minute', time), count(*), sum(value), sum(value * value),
           min(value), max(value)
    FROM new_rows
    GROUP BY 1, 2
    ON CONFLICT (sensor_id, bucket) DO UPDATE SET
        n = r.n + EXCLUDED.n,
        sum = r.sum + EXCLUDED.sum,
        sum_sq = r.sum_sq + EXCLUDED.sum_sq,
        min = least(r.min, EXCLUDED.min),
        max = greatest(r.max, EXCLUDED.max);
    RETURN NULL;
END
$$;

CREATE TRIGGER sensor_readings_rollup
    AFTER INSERT ON sensor_readings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION readings_1m_apply();
"""

# TimescaleDB: hypertable, compression, retention and a real-time continuous aggregate with the
# same columns as the plain table.
TIMESCALE = """
CREATE EXTENSION IF NOT EXISTS timescaledb;
SELECT create_hypertable('sensor_readings', 'time', chunk_time_interval => INTERVAL '1 day',
                         migrate_data => true);
ALTER TABLE sensor_readings SET (timescaledb.compress,
                                 timescaledb.compress_segmentby = 'sensor_id',
                                 timescaledb.compress_orderby = 'time DESC');
SELECT add_compression_policy('sensor_readings', INTERVAL '7 days');
SELECT add_retention_policy('sensor_readings', INTERVAL '180 days');
CREATE MATERIALIZED VIEW readings_1m
    WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT sensor_id, time_bucket(INTERVAL '1 minute', time) AS bucket, count(*) AS n,
           sum(value) AS sum, sum(value * value) AS sum_sq, min(value) AS min, max(value) AS max
    FROM sensor_readings
    GROUP BY sensor_id, bucket
    WITH NO DATA;
SELECT add_continuous_aggregate_policy('readings_1m', start_offset => INTERVAL '3 hours',
                                       end_offset => INTERVAL '1 minute',
                                       schedule_interval => INTERVAL '1 minute');
"""


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(TIMESCALE if use_timescale() else PLAIN_ROLLUP)


def downgrade() -> None:
    op.execute(
        "DROP MATERIALIZED VIEW IF EXISTS readings_1m CASCADE"
        if use_timescale()
        else "DROP TABLE IF EXISTS readings_1m; "
        "DROP TRIGGER IF EXISTS sensor_readings_rollup ON sensor_readings; "
        "DROP FUNCTION IF EXISTS readings_1m_apply()"
    )
    op.execute(
        "DROP TABLE idempotency_keys, api_keys, rejected_messages, anomaly_events, "
        "sensor_readings, sensors"
    )
