"""Every SQL statement of the API, as named constants (psycopg ``%(name)s`` / ``%s`` parameters).

All of them run on plain PostgreSQL 15 and on TimescaleDB (``readings_1m`` has the same columns
as a table or as a continuous aggregate). Optional filters use ``%(x)s::type IS NULL OR ...`` so
one statement serves every combination.
"""

from __future__ import annotations

# ------------------------------------------------------------------------------------ api keys

INSERT_API_KEY = """
INSERT INTO api_keys (name, prefix, key_hash, scopes, rate_limit_per_min)
VALUES (%s, %s, %s, %s, %s)
RETURNING name, prefix, scopes, rate_limit_per_min, created_at, last_used_at, revoked_at
"""

LIST_API_KEYS = """
SELECT name, prefix, scopes, rate_limit_per_min, created_at, last_used_at, revoked_at
FROM api_keys ORDER BY created_at, name
"""

REVOKE_API_KEY = "UPDATE api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL"

SELECT_API_KEY_BY_PREFIX = """
SELECT id, name, prefix, key_hash, scopes, rate_limit_per_min, revoked_at
FROM api_keys WHERE prefix = %s
"""

TOUCH_API_KEYS = """
UPDATE api_keys AS k SET last_used_at = greatest(k.last_used_at, u.t)
FROM unnest(%s::bigint[], %s::timestamptz[]) AS u(id, t)
WHERE k.id = u.id
"""

# ------------------------------------------------------------------------------- idempotency

# Claims the key for this request. A row whose answer expired, or whose request died while in
# progress (status 0 for over a minute), is taken over; a live row is left alone (no row returned).
CLAIM_IDEMPOTENCY_KEY = """
INSERT INTO idempotency_keys AS i
    (api_key_id, key, request_sha256, status_code, response, expires_at)
VALUES (%(api_key_id)s, %(key)s, %(sha)s, 0, '{}'::jsonb, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (api_key_id, key) DO UPDATE SET
    request_sha256 = EXCLUDED.request_sha256, status_code = 0, response = '{}'::jsonb,
    created_at = now(), expires_at = EXCLUDED.expires_at
WHERE i.expires_at <= now()
   OR (i.status_code = 0 AND i.created_at < now() - make_interval(secs => %(stale_s)s))
RETURNING 1
"""

SELECT_IDEMPOTENCY_KEY = """
SELECT request_sha256, status_code, response FROM idempotency_keys
WHERE api_key_id = %s AND key = %s
"""

COMPLETE_IDEMPOTENCY_KEY = """
UPDATE idempotency_keys SET status_code = %s, response = %s
WHERE api_key_id = %s AND key = %s
"""

RELEASE_IDEMPOTENCY_KEY = """
DELETE FROM idempotency_keys WHERE api_key_id = %s AND key = %s AND status_code = 0
"""

PURGE_IDEMPOTENCY_KEYS = "DELETE FROM idempotency_keys WHERE expires_at <= now()"

# ----------------------------------------------------------------------------------- rejects

INSERT_REJECTED = """
INSERT INTO rejected_messages (source, topic, payload, payload_bytes, item_index, reason, detail)
VALUES ('http', %s, %s, %s, %s, %s, %s)
"""

# ----------------------------------------------------------------------------------- sensors

_SENSOR_COLUMNS = """
s.sensor_id, s.device_id, s.sensor_type, s.unit, s.location, s.description, s.valid_min,
s.valid_max, s.expected_interval_s, s.created_at, s.last_seen_at,
l.time AS last_reading_time, l.value AS last_reading_value
"""

_LATEST_READING = """
LEFT JOIN LATERAL (
    SELECT r.time, r.value FROM sensor_readings r
    WHERE r.sensor_id = s.sensor_id ORDER BY r.time DESC LIMIT 1
) l ON true
"""

LIST_SENSORS = f"""
SELECT {_SENSOR_COLUMNS}
FROM sensors s {_LATEST_READING}
WHERE (%(after)s::text IS NULL OR s.sensor_id > %(after)s)
  AND (%(sensor_type)s::text IS NULL OR s.sensor_type = %(sensor_type)s)
  AND (%(device_id)s::text IS NULL OR s.device_id = %(device_id)s)
ORDER BY s.sensor_id
LIMIT %(limit)s
"""  # noqa: S608 - composed of the constants above, no input

GET_SENSOR = f"""
SELECT {_SENSOR_COLUMNS},
       (SELECT count(*) FROM anomaly_events e
        WHERE e.sensor_id = s.sensor_id AND e.state = 'open') AS open_anomalies
FROM sensors s {_LATEST_READING}
WHERE s.sensor_id = %s
"""  # noqa: S608

SENSOR_EXISTS = "SELECT expected_interval_s FROM sensors WHERE sensor_id = %s"

# ---------------------------------------------------------------------------------- readings

RAW_READINGS = """
SELECT time, value FROM sensor_readings
WHERE sensor_id = %(sensor_id)s AND time >= %(start)s AND time < %(end)s
ORDER BY time
LIMIT %(limit)s
"""

# Buckets are aligned to multiples of the width since 2000-01-01 UTC (date_bin's origin), and built
# from the exact 1-minute rollups: n, sum and sum of squares add up, so mean and stddev are exact.
BUCKETED_READINGS = """
SELECT date_bin(%(width)s::interval, bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS time,
       sum(n)::bigint AS n,
       sum(sum) / sum(n) AS mean,
       min(min) AS min,
       max(max) AS max,
       sqrt(greatest(sum(sum_sq) / sum(n) - power(sum(sum) / sum(n), 2), 0)) AS stddev
FROM readings_1m
WHERE sensor_id = %(sensor_id)s AND bucket >= %(start)s AND bucket < %(end)s
GROUP BY 1
ORDER BY 1
LIMIT %(limit)s
"""

AGGREGATES = """
SELECT sensor_id,
       date_bin(%(width)s::interval, bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS time,
       sum(n)::bigint AS n,
       sum(sum) / sum(n) AS mean,
       min(min) AS min,
       max(max) AS max,
       sqrt(greatest(sum(sum_sq) / sum(n) - power(sum(sum) / sum(n), 2), 0)) AS stddev
FROM readings_1m
WHERE bucket >= %(start)s AND bucket < %(end)s
  AND (%(sensor_id)s::text IS NULL OR sensor_id = %(sensor_id)s)
GROUP BY 1, 2
ORDER BY 1, 2
LIMIT %(limit)s
"""

# Recent history of one sensor, newest first (the caller reverses it).
RECENT_HISTORY = """
SELECT time, value FROM sensor_readings
WHERE sensor_id = %s ORDER BY time DESC LIMIT %s
"""

# Readings stored since each cached sensor's last fed time, oldest first, capped per sensor.
NEW_READINGS = """
SELECT r.sensor_id, r.time, r.value
FROM unnest(%s::text[], %s::timestamptz[]) AS c(sensor_id, after)
JOIN LATERAL (
    SELECT sensor_id, time, value FROM sensor_readings x
    WHERE x.sensor_id = c.sensor_id AND x.time > c.after
    ORDER BY x.time LIMIT %s
) r ON true
ORDER BY r.sensor_id, r.time
"""

# --------------------------------------------------------------------------------- anomalies

_EVENT_COLUMNS = """
event_id::text AS event_id, sensor_id, kind, state, severity, score, value, expected, lower,
upper, detectors, model_version, opened_at, updated_at, resolved_at, emitted_at
"""

LIST_ANOMALIES = f"""
SELECT {_EVENT_COLUMNS}
FROM anomaly_events
WHERE opened_at >= %(start)s AND opened_at < %(end)s
  AND (%(sensor_id)s::text IS NULL OR sensor_id = %(sensor_id)s)
  AND (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(severity)s::text IS NULL OR severity = %(severity)s)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(c_time)s::timestamptz IS NULL
       OR (opened_at, event_id) < (%(c_time)s::timestamptz, %(c_id)s::uuid))
ORDER BY opened_at DESC, event_id DESC
LIMIT %(limit)s
"""  # noqa: S608

# ----------------------------------------------------------------------------------- reports

# One row per registered sensor (a silent sensor shows count 0, not nothing). Gaps are intervals
# between consecutive readings longer than twice the expected interval; the edges of the window
# are added by the caller, which knows "now". Incidents count when they overlap the window.
SUMMARY = """
WITH r AS (
    SELECT x.sensor_id, x.time, x.value,
           extract(epoch FROM x.time - lag(x.time) OVER (PARTITION BY x.sensor_id
                                                           ORDER BY x.time)) AS dt_s
    FROM sensor_readings x
    WHERE x.time >= %(start)s AND x.time < %(end)s
      AND (%(sensor_id)s::text IS NULL OR x.sensor_id = %(sensor_id)s)
), stats AS (
    SELECT r.sensor_id, count(*) AS n, min(r.value) AS min, avg(r.value) AS mean,
           max(r.value) AS max,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY r.value) AS p95,
           stddev_pop(r.value) AS stddev,
           min(r.time) AS first_time, max(r.time) AS last_time,
           count(*) FILTER (WHERE r.dt_s > 2 * s.expected_interval_s) AS gaps,
           max(r.dt_s) AS max_gap_s
    FROM r JOIN sensors s USING (sensor_id)
    GROUP BY r.sensor_id
), ev AS (
    SELECT sensor_id,
           count(*) FILTER (WHERE kind = 'anomaly' AND severity = 'warning') AS warning,
           count(*) FILTER (WHERE kind = 'anomaly' AND severity = 'critical') AS critical,
           count(*) FILTER (WHERE kind = 'deadman') AS deadman
    FROM anomaly_events
    WHERE opened_at < %(end)s AND (resolved_at IS NULL OR resolved_at >= %(start)s)
      AND (%(sensor_id)s::text IS NULL OR sensor_id = %(sensor_id)s)
    GROUP BY sensor_id
)
SELECT s.sensor_id, s.unit, s.expected_interval_s,
       coalesce(st.n, 0) AS count, st.min, st.mean, st.max, st.p95, st.stddev,
       st.first_time, st.last_time, coalesce(st.gaps, 0) AS gaps, st.max_gap_s,
       coalesce(ev.warning, 0) AS anomalies_warning,
       coalesce(ev.critical, 0) AS anomalies_critical,
       coalesce(ev.deadman, 0) AS anomalies_deadman
FROM sensors s
LEFT JOIN stats st USING (sensor_id)
LEFT JOIN ev USING (sensor_id)
WHERE (%(sensor_id)s::text IS NULL OR s.sensor_id = %(sensor_id)s)
ORDER BY s.sensor_id
"""

# -------------------------------------------------------------------------------------- misc

PING = "SELECT 1"

# Sensors with a reading in the last day, most recent first: the ones worth warming on startup.
RECENTLY_ACTIVE_SENSORS = """
SELECT s.sensor_id FROM sensors s
WHERE s.last_seen_at > now() - interval '1 day'
   OR EXISTS (SELECT 1 FROM sensor_readings r WHERE r.sensor_id = s.sensor_id
              AND r.time > now() - interval '1 day')
ORDER BY s.last_seen_at DESC NULLS LAST
LIMIT %s
"""
