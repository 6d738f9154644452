"""SQL of the scorer, as named constants (plain PostgreSQL; TimescaleDB runs them unchanged)."""

from __future__ import annotations

# Every registered sensor with its registered interval and when it was last active (the
# ingestor's last_seen_at, else its newest stored reading: one backward step on the primary key,
# evaluated only when last_seen_at is NULL). The shard filter runs in Python because the shard
# function (CRC-32) is defined there, and the registry is small.
SENSORS = """
SELECT s.sensor_id, s.expected_interval_s,
       COALESCE(s.last_seen_at,
                (SELECT max(r.time) FROM sensor_readings AS r WHERE r.sensor_id = s.sensor_id))
FROM sensors AS s
"""

# The last readings of each of the given sensors, newest :limit within the window, oldest first.
# One statement for the whole shard: a LATERAL index scan per sensor on the (sensor_id, time) key.
WARM_START_READINGS = """
SELECT s.sensor_id, r.time, r.value, r.received_at
FROM unnest(%(sensor_ids)s::text[]) AS s (sensor_id)
CROSS JOIN LATERAL (
    SELECT time, value, received_at
    FROM sensor_readings
    WHERE sensor_id = s.sensor_id AND time >= %(since)s
    ORDER BY time DESC
    LIMIT %(limit)s
) AS r
ORDER BY s.sensor_id, r.time
"""

# Catch-up after a reconnect: the readings of the given sensors stored after each one's own mark
# (its last scored reading, or the window's start), the newest :limit of them, oldest first.
CATCH_UP_READINGS = """
SELECT sensor_id, time, value, received_at
FROM (
    SELECT r.sensor_id, r.time, r.value, r.received_at
    FROM unnest(%(sensor_ids)s::text[], %(since)s::timestamptz[]) AS s (sensor_id, since)
    JOIN sensor_readings AS r ON r.sensor_id = s.sensor_id AND r.time > s.since
    ORDER BY r.time DESC
    LIMIT %(limit)s
) AS newest
ORDER BY time, sensor_id
"""

OPEN_ALERTS = """
SELECT event_id::text, sensor_id, kind, severity, score, opened_at, updated_at
FROM anomaly_events
WHERE state = 'open'
"""

# Upsert alert events, one row per incident, in ONE statement: with autocommit it is its own
# transaction, so the COMMIT costs no round trip of its own (one round trip per batch of alerts).
# The CTE registers sensors the registry has not seen yet (the ingestor may be behind, or not
# running) so the foreign key holds; it never overwrites a registered sensor. Foreign keys are
# checked at the end of the statement, after the CTE's rows are in.
#
# The row summarises the incident at its peak: score and severity only grow, value/band/detectors
# are those of the highest-scoring event; a resolved incident never reopens (a late, redelivered
# "open" cannot undo a "resolved"). One statement may carry each event_id once (ON CONFLICT cannot
# touch a row twice); ``scorer.storage`` splits repeats into later statements.
UPSERT_EVENTS = """
WITH ensured AS (
    INSERT INTO sensors (sensor_id)
    SELECT DISTINCT unnest(%(sensor_id)s::text[])
    ON CONFLICT (sensor_id) DO NOTHING
)
INSERT INTO anomaly_events AS a (
    event_id, sensor_id, kind, state, severity, score, value, expected, lower, upper,
    detectors, model_version, opened_at, updated_at, resolved_at, emitted_at)
SELECT * FROM unnest(
    %(event_id)s::uuid[], %(sensor_id)s::text[], %(kind)s::text[], %(state)s::text[],
    %(severity)s::text[], %(score)s::float8[], %(value)s::float8[], %(expected)s::float8[],
    %(lower)s::float8[], %(upper)s::float8[], %(detectors)s::jsonb[], %(model_version)s::text[],
    %(opened_at)s::timestamptz[], %(updated_at)s::timestamptz[], %(resolved_at)s::timestamptz[],
    %(emitted_at)s::timestamptz[])
ON CONFLICT (event_id) DO UPDATE SET
    state = CASE WHEN a.state = 'resolved' THEN 'resolved' ELSE EXCLUDED.state END,
    resolved_at = COALESCE(a.resolved_at, EXCLUDED.resolved_at),
    severity = CASE WHEN 'critical' IN (a.severity, EXCLUDED.severity)
                    THEN 'critical' ELSE 'warning' END,
    score = GREATEST(a.score, EXCLUDED.score),
    value = CASE WHEN EXCLUDED.score > a.score THEN EXCLUDED.value ELSE a.value END,
    expected = CASE WHEN EXCLUDED.score > a.score THEN EXCLUDED.expected ELSE a.expected END,
    lower = CASE WHEN EXCLUDED.score > a.score THEN EXCLUDED.lower ELSE a.lower END,
    upper = CASE WHEN EXCLUDED.score > a.score THEN EXCLUDED.upper ELSE a.upper END,
    detectors = CASE WHEN EXCLUDED.score > a.score THEN EXCLUDED.detectors ELSE a.detectors END,
    model_version = EXCLUDED.model_version,
    updated_at = GREATEST(a.updated_at, EXCLUDED.updated_at),
    emitted_at = GREATEST(a.emitted_at, EXCLUDED.emitted_at)
"""
