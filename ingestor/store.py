"""The database side of the ingestor: one connection, one transaction per batch.

psycopg errors are translated here: connection loss, timeouts, deadlocks and anything else that
may pass on retry become ``StorageError`` (the writer keeps the batch and retries it); errors
caused by the batch's own data become ``StatementRejected`` (the writer isolates the culprit).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import psycopg

from core.errors import StorageError
from ingestor import queries
from ingestor.batching import Batch, Reject, Row

log = logging.getLogger(__name__)


class StatementRejected(StorageError):
    """The database refused the batch's data; the same batch would fail again."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    inserted: int
    duplicates: int
    rejected: Counter[str] = field(default_factory=Counter)


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; a reject row must never fail on the text it describes.
    return text.replace("\x00", "\\0")


class ReadingStore:
    """Writes batches idempotently. Not thread-safe: one writer thread owns it."""

    def __init__(
        self,
        dsn: str,
        *,
        require_registered: bool = False,
        statement_timeout_ms: int = 30_000,
        reject_cap: int = 4096,
        application_name: str = "sensorpipe-ingestor",
    ) -> None:
        self._dsn = dsn
        self._require_registered = require_registered
        self._statement_timeout_ms = statement_timeout_ms
        self._reject_cap = reject_cap
        self._application_name = application_name
        self._conn: psycopg.Connection | None = None

    def connect(self) -> psycopg.Connection:
        """Open the connection (idempotent). Raises ``StorageError`` when the database is away."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self.close()
        try:
            conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=5,
                application_name=self._application_name,
                options=f"-c statement_timeout={self._statement_timeout_ms}",
                # Notice a silently dead server (cable, VM pause) within ~30 s, not hours.
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
            conn.execute(queries.CREATE_STAGING)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to the database: {exc}") from exc
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:  # closing a broken connection may fail; it is gone either way
                log.debug("error closing a broken connection", exc_info=True)
            self._conn = None

    def write(self, batch: Batch) -> WriteResult:
        """Store the batch's rows and rejects in one transaction; return what was new."""
        conn = self.connect()
        try:
            with conn.transaction():
                return self._write(conn, batch)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            raise StatementRejected(f"{type(exc).__name__}: {exc}") from exc
        except psycopg.Error as exc:
            # Connection lost, statement timeout, deadlock, admin shutdown, missing table during
            # a migration...: keep the batch and retry, never discard data on a maybe-transient
            # failure.
            if self._conn is not None and (self._conn.closed or self._conn.broken):
                self.close()
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc

    def _write(self, conn: psycopg.Connection, batch: Batch) -> WriteResult:
        rows, extra = self._register_sensors(conn, batch)
        inserted = 0
        if rows:
            with conn.cursor() as cur:
                with cur.copy(queries.COPY_STAGING) as copy:
                    copy.set_types(queries.STAGING_TYPES)
                    for row in rows:
                        copy.write_row(row)
                cur.execute(queries.MOVE_STAGED)
                inserted = max(cur.rowcount, 0)
        rejects = batch.rejects + extra
        if rejects:
            self._write_rejects(conn, rejects)
        return WriteResult(inserted, len(rows) - inserted, Counter(r.reason for r in rejects))

    def _register_sensors(
        self, conn: psycopg.Connection, batch: Batch
    ) -> tuple[list[Row], list[Reject]]:
        """Lock the batch's sensors in id order (see ``queries``); in pre-registration mode,
        turn the messages of unknown sensors into ``unknown_sensor`` rejects."""
        if not batch.sensors:
            return batch.rows, []
        ids = sorted(batch.sensors)
        seen = [batch.sensors[i].last_seen for i in ids]
        if not self._require_registered:
            types = [batch.sensors[i].sensor_type for i in ids]
            units = [batch.sensors[i].unit for i in ids]
            conn.execute(
                queries.UPSERT_SENSORS, {"ids": ids, "types": types, "units": units, "seen": seen}
            )
            return batch.rows, []
        known = {r[0] for r in conn.execute(queries.LOCK_KNOWN_SENSORS, {"ids": ids})}
        conn.execute(queries.TOUCH_SENSORS, {"ids": ids, "seen": seen})
        if len(known) == len(ids):
            return batch.rows, []
        rows: list[Row] = []
        extra: list[Reject] = []
        probe = Batch()
        for span in batch.spans:
            if span.sensor_id in known:
                rows.extend(batch.rows[span.start : span.end])
            else:
                probe.reject(
                    span.message,
                    "unknown_sensor",
                    f"sensor {span.sensor_id!r} is not registered "
                    f"({span.end - span.start} readings)",
                    cap=self._reject_cap,
                )
        extra.extend(probe.rejects)
        return rows, extra

    @staticmethod
    def _write_rejects(conn: psycopg.Connection, rejects: list[Reject]) -> None:
        with conn.cursor() as cur, cur.copy(queries.COPY_REJECTS) as copy:
            for r in rejects:
                copy.write_row(
                    (
                        r.received_at,
                        "mqtt",
                        _clean(r.topic),
                        r.payload,
                        r.payload_bytes,
                        r.item_index,
                        _clean(r.reason),
                        _clean(r.detail),
                    )
                )
