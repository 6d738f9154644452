"""``Idempotency-Key`` for POSTs that have effects (``/data/ingest``).

The first request with a key *claims* it (a row with status 0), does its work, and stores its
answer; a replay with the same body gets that answer back (``Idempotent-Replayed: true``) without
doing the work again; the same key with another body is a 422, and a replay while the first is
still running is a 409. Only successful answers are kept: after an error the key is released, so
the client may retry with the same key. A claim left behind by a crashed process is taken over
after a minute; answers expire after ``api_idempotency_ttl_s``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from api import queries
from api.errors import ApiError

HEADER = "Idempotency-Key"
_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces
STALE_CLAIM_S = 60


@dataclass(frozen=True, slots=True)
class Replay:
    status_code: int
    body: dict[str, Any]


def check_key(key: str) -> str:
    if not _KEY_RE.fullmatch(key):
        raise ApiError(
            422,
            "invalid_idempotency_key",
            f"{HEADER} must be 1 to 255 printable ASCII characters without spaces",
        )
    return key


def body_sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class IdempotencyStore:
    def __init__(self, pool: AsyncConnectionPool, ttl_s: int) -> None:
        self.pool = pool
        self.ttl_s = ttl_s

    async def claim(self, api_key_id: int, key: str, sha: str) -> Replay | None:
        """None when this request now owns the key; a Replay when an answer is stored."""
        params = {
            "api_key_id": api_key_id,
            "key": key,
            "sha": sha,
            "ttl": self.ttl_s,
            "stale_s": STALE_CLAIM_S,
        }
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(queries.CLAIM_IDEMPOTENCY_KEY, params)
            if await cur.fetchone() is not None:
                return None
            await cur.execute(queries.SELECT_IDEMPOTENCY_KEY, (api_key_id, key))
            row = await cur.fetchone()
        if row is None:  # expired and purged between the two statements: claim again
            return await self.claim(api_key_id, key, sha)
        if row["request_sha256"] != sha:
            raise ApiError(
                422,
                "idempotency_key_reused",
                f"this {HEADER} was used with a different request body",
            )
        if row["status_code"] == 0:
            raise ApiError(
                409,
                "idempotency_in_progress",
                f"a request with this {HEADER} is still being processed",
            )
        return Replay(int(row["status_code"]), dict(row["response"]))

    async def complete(
        self, api_key_id: int, key: str, status_code: int, body: dict[str, Any]
    ) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                queries.COMPLETE_IDEMPOTENCY_KEY, (status_code, Jsonb(body), api_key_id, key)
            )

    async def release(self, api_key_id: int, key: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(queries.RELEASE_IDEMPOTENCY_KEY, (api_key_id, key))
