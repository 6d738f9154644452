"""API keys: creation, hashing, verification, scopes and per-key rate limits.

A key looks like ``sp_<prefix>_<secret>``. It is shown once, at creation; the database keeps the
visible ``prefix`` (to find the row and to tell keys apart in listings) and the SHA-256 of the
whole key. The secret is 256 random bits, so a plain SHA-256 is as strong as a slow KDF here: no
dictionary exists for it. Verification compares digests with ``hmac.compare_digest`` (constant
time). A key never appears in a log line, a metric label or an error message — only its name or
prefix does.

Verified keys are cached for a few seconds (``api_key_cache_s``) so a hot path costs no database
round trip; revocation therefore takes effect within that window. ``last_used_at`` is written in
one statement per flush interval for all keys used since, never per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from api import queries
from api.errors import ApiError
from api.metrics import ApiMetrics
from core.errors import ConfigError, NotFoundError

log = logging.getLogger(__name__)

SCOPES = ("data:ingest", "reports:read", "ml:predict", "admin")
ADMIN = "admin"
KEY_PREFIX = "sp"
_PREFIX_BYTES = 4  # 8 hex characters: enough to be unique among a site's keys, short to read
_MAX_KEY_CHARS = 200
_MAX_CACHED_KEYS = 10_000


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> tuple[str, str, str]:
    """A new key: (the full key to show once, its visible prefix, its hash to store)."""
    prefix = secrets.token_hex(_PREFIX_BYTES)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_key(key)


def parse_prefix(key: str) -> str | None:
    """The visible prefix of a well-formed key, or None."""
    if len(key) > _MAX_KEY_CHARS:
        return None
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 2 * _PREFIX_BYTES:
        return None
    if not all(c in "0123456789abcdef" for c in parts[1]) or not parts[2]:
        return None
    return parts[1]


def check_scopes(scopes: Iterable[str]) -> list[str]:
    wanted = sorted({s.strip() for s in scopes if s.strip()})
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise ConfigError(
            f"scopes must be a non-empty subset of {', '.join(SCOPES)}; "
            f"unknown: {', '.join(unknown) or '-'}"
        )
    return wanted


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An authenticated caller. ``admin`` implies every other scope."""

    id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    rate_limit_per_min: int

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes


# ----------------------------------------------------------------------------- key management
# Synchronous: used by the `sensorpipe keys` command, one statement each.


@dataclass(frozen=True, slots=True)
class KeyInfo:
    name: str
    prefix: str
    scopes: list[str]
    rate_limit_per_min: int
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def create_key(
    conn: psycopg.Connection[Any], name: str, scopes: Iterable[str], rate_limit_per_min: int = 600
) -> tuple[str, KeyInfo]:
    """Store a new key and return it (the only time the secret exists outside the caller)."""
    if not name or len(name) > 100:
        raise ConfigError("a key name is 1 to 100 characters")
    if rate_limit_per_min < 1:
        raise ConfigError("rate limit must be at least 1 request per minute")
    checked = check_scopes(scopes)
    key, prefix, digest = generate_key()
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(queries.INSERT_API_KEY, (name, prefix, digest, checked, rate_limit_per_min))
            row = cur.fetchone()
        conn.commit()
        if row is None:
            raise ConfigError("the key was not stored")
    except psycopg.errors.UniqueViolation as exc:
        conn.rollback()
        raise ConfigError(f"a key named {name!r} already exists") from exc
    return key, KeyInfo(**row)


def list_keys(conn: psycopg.Connection[Any]) -> list[KeyInfo]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.LIST_API_KEYS)
        return [KeyInfo(**row) for row in cur.fetchall()]


def revoke_key(conn: psycopg.Connection[Any], name: str) -> None:
    with conn.cursor() as cur:
        cur.execute(queries.REVOKE_API_KEY, (name,))
        found = cur.rowcount
    conn.commit()
    if not found:
        raise NotFoundError(f"no active key named {name!r}")


# ----------------------------------------------------------------------------- rate limits


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """A token bucket per key in this process: ``rate_limit_per_min`` tokens a minute, and a
    burst of as many. With N API processes the effective limit is N times this (documented)."""

    buckets: dict[int, _Bucket] = field(default_factory=dict)

    def acquire(self, key: ApiKey, now: float | None = None) -> float:
        """0.0 when the request may proceed, else the seconds until a token is available."""
        now = time.monotonic() if now is None else now
        per_s = key.rate_limit_per_min / 60.0
        capacity = float(key.rate_limit_per_min)
        bucket = self.buckets.get(key.id)
        if bucket is None:
            bucket = self.buckets[key.id] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * per_s)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / per_s


# ----------------------------------------------------------------------------- authentication


@dataclass(slots=True)
class _Cached:
    key: ApiKey | None
    key_hash: str
    revoked: bool
    expires: float


class Authenticator:
    """Verifies ``X-API-Key`` values against ``api_keys``; see the module docstring."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        metrics: ApiMetrics,
        *,
        cache_s: float,
        touch_interval_s: float,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.cache_s = cache_s
        self.touch_interval_s = touch_interval_s
        self.limiter = RateLimiter()
        self._cache: dict[str, _Cached] = {}
        self._touched: dict[int, datetime] = {}

    async def authenticate(self, presented: str | None) -> ApiKey:
        if not presented:
            self.metrics.auth_failures.labels("missing").inc()
            raise ApiError(
                401,
                "missing_api_key",
                "send an API key in the X-API-Key header",
                headers={"WWW-Authenticate": "ApiKey"},
            )
        prefix = parse_prefix(presented)
        entry = await self._lookup(prefix) if prefix else None
        # compare_digest on equal-length hex digests: the time taken says nothing about the key.
        expected = entry.key_hash if entry else "0" * 64
        matches = hmac.compare_digest(hash_key(presented), expected)
        if entry is None or entry.key is None or not matches:
            self.metrics.auth_failures.labels("invalid").inc()
            raise ApiError(
                401,
                "invalid_api_key",
                "the API key is not valid",
                headers={"WWW-Authenticate": "ApiKey"},
            )
        if entry.revoked:
            self.metrics.auth_failures.labels("revoked").inc()
            raise ApiError(
                401,
                "revoked_api_key",
                "the API key has been revoked",
                headers={"WWW-Authenticate": "ApiKey"},
            )
        self._touched[entry.key.id] = datetime.now(UTC)
        return entry.key

    def authorize(self, key: ApiKey, scope: str) -> None:
        if not key.allows(scope):
            self.metrics.auth_failures.labels("scope").inc()
            raise ApiError(
                403,
                "insufficient_scope",
                f"this key lacks the {scope!r} scope",
                required_scope=scope,
            )
        wait_s = self.limiter.acquire(key)
        if wait_s > 0:
            self.metrics.rate_limited.inc()
            retry = max(1, math.ceil(wait_s))
            raise ApiError(
                429,
                "rate_limited",
                f"rate limit of {key.rate_limit_per_min} requests/minute exceeded",
                headers={"Retry-After": str(retry)},
                retry_after_s=retry,
            )

    async def _lookup(self, prefix: str) -> _Cached | None:
        now = time.monotonic()
        entry = self._cache.get(prefix)
        if entry is not None and entry.expires > now:
            return entry
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(queries.SELECT_API_KEY_BY_PREFIX, (prefix,))
            row = await cur.fetchone()
        if len(self._cache) >= _MAX_CACHED_KEYS:
            self._cache.clear()  # crude but bounded; a cache miss costs one indexed lookup
        if row is None:
            # Negative entries too: a flood of made-up keys costs one query per prefix per window.
            entry = _Cached(None, "0" * 64, False, now + self.cache_s)
        else:
            key = ApiKey(
                id=row["id"],
                name=row["name"],
                prefix=row["prefix"],
                scopes=frozenset(row["scopes"]),
                rate_limit_per_min=row["rate_limit_per_min"],
            )
            entry = _Cached(key, row["key_hash"], row["revoked_at"] is not None, now + self.cache_s)
        self._cache[prefix] = entry
        return entry

    async def flush_touches(self) -> None:
        """Write ``last_used_at`` for every key used since the last flush, in one statement."""
        if not self._touched:
            return
        touched, self._touched = self._touched, {}
        ids = list(touched)
        times = [touched[i] for i in ids]
        async with self.pool.connection() as conn:
            await conn.execute(queries.TOUCH_API_KEYS, (ids, times))

    async def run_toucher(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.touch_interval_s)
            try:
                await self.flush_touches()
            except Exception:  # the next flush retries; usage times are advisory
                log.warning("could not record key usage", exc_info=True)
