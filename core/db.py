"""PostgreSQL access: connection pools, readiness waits, and TimescaleDB detection.

psycopg errors are translated to ``StorageError`` here and in the components' repositories,
never above them.
"""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from core.errors import StorageError

log = logging.getLogger(__name__)

TIMESCALE_AVAILABLE_SQL = "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
TIMESCALE_INSTALLED_SQL = "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"


def async_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 8,
    max_waiting: int = 64,
    name: str = "sensorpipe",
) -> AsyncConnectionPool:
    """A pool opened by the caller's lifespan (``await pool.open()``).

    ``max_waiting`` is the backpressure at the database edge: past it, callers fail fast with
    ``TooManyRequests`` instead of queueing without bound.
    """
    return AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_waiting=max_waiting,
        open=False,
        name=name,
        kwargs={"autocommit": False, "application_name": name},
        reconnect_timeout=60,
    )


def sync_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 4, name: str = "sensorpipe"
) -> ConnectionPool:
    return ConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name,
        kwargs={"autocommit": False, "application_name": name},
    )


def connect(dsn: str, *, autocommit: bool = True, timeout_s: float = 5.0) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=max(1, int(timeout_s)))
    except psycopg.Error as exc:
        raise StorageError(f"cannot connect to the database: {exc}") from exc


def wait_for_db(dsn: str, *, timeout_s: float = 60.0, interval_s: float = 0.5) -> None:
    """Block until the database accepts connections (prestart step before migrations)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with connect(dsn, timeout_s=2) as conn:
                conn.execute("SELECT 1")
                return
        except StorageError:
            if time.monotonic() >= deadline:
                raise
            log.info("waiting for the database")
            time.sleep(interval_s)


async def async_wait_for_db(dsn: str, *, timeout_s: float = 60.0) -> None:
    await asyncio.to_thread(wait_for_db, dsn, timeout_s=timeout_s)


def timescale_installed(conn: psycopg.Connection) -> bool:
    return conn.execute(TIMESCALE_INSTALLED_SQL).fetchone() is not None
