"""SQL of the ingestor, as named constants.

Idempotence comes from the table, not from us: rows are COPY'd into a session-private staging
table, then moved with ``INSERT ... ON CONFLICT DO NOTHING`` on the ``(sensor_id, time)`` primary
key, so a redelivered message is a no-op and the rowcount tells new rows from duplicates.

Lock order: every transaction first locks the ``sensors`` rows of its batch in ``sensor_id``
order. Readings and rollup rows of a sensor are only written by a transaction holding that
sensor's lock, so two ingestors sharing a subscription serialize per sensor and cannot deadlock.
"""

from __future__ import annotations

CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    time        timestamptz      NOT NULL,
    sensor_id   text             NOT NULL,
    value       double precision NOT NULL,
    received_at timestamptz      NOT NULL
) ON COMMIT DELETE ROWS
"""

COPY_STAGING = (
    "COPY ingest_staging (time, sensor_id, value, received_at) FROM STDIN (FORMAT BINARY)"
)
STAGING_TYPES = ("timestamptz", "text", "float8", "timestamptz")

MOVE_STAGED = """
INSERT INTO sensor_readings (time, sensor_id, value, received_at)
SELECT time, sensor_id, value, received_at FROM ingest_staging
ON CONFLICT (sensor_id, time) DO NOTHING
"""

# Auto-registration: first sighting creates the sensor with the payload's type/unit; later
# sightings only move last_seen_at forward (once per batch per sensor) and fill missing fields.
UPSERT_SENSORS = """
INSERT INTO sensors AS s (sensor_id, sensor_type, unit, last_seen_at)
SELECT u.sensor_id, u.sensor_type, u.unit, u.seen
FROM unnest(%(ids)s::text[], %(types)s::text[], %(units)s::text[], %(seen)s::timestamptz[])
     AS u(sensor_id, sensor_type, unit, seen)
ORDER BY u.sensor_id
ON CONFLICT (sensor_id) DO UPDATE SET
    last_seen_at = GREATEST(s.last_seen_at, EXCLUDED.last_seen_at),
    sensor_type = COALESCE(s.sensor_type, EXCLUDED.sensor_type),
    unit = COALESCE(s.unit, EXCLUDED.unit)
"""

# Pre-registration mode: lock (in order) and return the sensors that exist; the rest are rejected.
LOCK_KNOWN_SENSORS = """
SELECT sensor_id FROM sensors WHERE sensor_id = ANY(%(ids)s::text[])
ORDER BY sensor_id FOR NO KEY UPDATE
"""

TOUCH_SENSORS = """
UPDATE sensors AS s SET last_seen_at = GREATEST(s.last_seen_at, u.seen)
FROM unnest(%(ids)s::text[], %(seen)s::timestamptz[]) AS u(sensor_id, seen)
WHERE s.sensor_id = u.sensor_id
"""

COPY_REJECTS = (
    "COPY rejected_messages (received_at, source, topic, payload, payload_bytes, item_index,"
    " reason, detail) FROM STDIN"
)
