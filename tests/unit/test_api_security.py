"""API keys and rate limits, without I/O."""

from __future__ import annotations

import hmac

import pytest

from api.security import (
    ApiKey,
    RateLimiter,
    check_scopes,
    generate_key,
    hash_key,
    parse_prefix,
)
from core.errors import ConfigError


def key(rate: int = 60, scopes: tuple[str, ...] = ("reports:read",)) -> ApiKey:
    return ApiKey(
        id=1, name="k", prefix="0123abcd", scopes=frozenset(scopes), rate_limit_per_min=rate
    )


def test_generated_keys_are_unique_prefixed_and_stored_hashed() -> None:
    full, prefix, digest = generate_key()
    assert full.startswith(f"sp_{prefix}_") and len(full) > 50
    assert parse_prefix(full) == prefix
    assert digest == hash_key(full) and full not in digest and len(digest) == 64
    assert hmac.compare_digest(digest, hash_key(full))
    assert len({generate_key()[0] for _ in range(50)}) == 50


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sp",
        "sp_0123abcd",
        "sp_0123abcd_",
        "xx_0123abcd_s",
        "sp_0123ABCD_s",
        "sp_0123abc_s",
        "sp_" + "a" * 300,
    ],
)
def test_malformed_keys_have_no_prefix(bad: str) -> None:
    assert parse_prefix(bad) is None


def test_secret_may_contain_the_separator() -> None:
    assert parse_prefix("sp_0123abcd_a_b_c") == "0123abcd"


def test_scopes_are_checked() -> None:
    assert check_scopes([" ml:predict", "admin", "ml:predict"]) == ["admin", "ml:predict"]
    with pytest.raises(ConfigError, match="unknown: root"):
        check_scopes(["root"])
    with pytest.raises(ConfigError):
        check_scopes([""])


def test_admin_implies_every_scope() -> None:
    assert key(scopes=("admin",)).allows("data:ingest")
    assert not key(scopes=("reports:read",)).allows("ml:predict")


def test_token_bucket_bursts_then_refills_at_the_rate() -> None:
    limiter = RateLimiter()
    k = key(rate=6)  # 6 per minute: one token every 10 s, burst of 6
    assert [limiter.acquire(k, now=100.0) for _ in range(6)] == [0.0] * 6
    wait = limiter.acquire(k, now=100.0)
    assert wait == pytest.approx(10.0)
    assert limiter.acquire(k, now=105.0) == pytest.approx(5.0)
    assert limiter.acquire(k, now=110.0) == 0.0  # one token back after 10 s
    assert limiter.acquire(k, now=110.0) > 0.0
    assert limiter.acquire(k, now=1000.0) == 0.0  # long idle: full again, but capped
    assert sum(limiter.acquire(k, now=1000.0) == 0.0 for _ in range(10)) == 5


def test_buckets_are_per_key() -> None:
    limiter = RateLimiter()
    a, b = key(rate=1), ApiKey(2, "b", "0123abce", frozenset({"admin"}), 1)
    assert limiter.acquire(a, now=0.0) == 0.0
    assert limiter.acquire(a, now=0.0) > 0.0
    assert limiter.acquire(b, now=0.0) == 0.0
