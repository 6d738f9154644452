"""The ingestor's lifecycle: receive → batch → COMMIT → acknowledge, and a clean shutdown.

Three threads, a pipeline: paho's network thread puts messages on a bounded queue; the decoder
(the thread that calls ``run``) turns them into batches; the writer writes each batch in one
transaction and then acknowledges its messages. Decoding batch N+1 overlaps with the database
working on batch N (psycopg releases the GIL while it waits), and while the writer is busy the
decoder lets the next batch grow past its age limit instead of waiting, so batches get larger
exactly when the database is the bottleneck.

While the database is away the writer retries the same batch with backoff and acknowledges
nothing, so the broker stops sending once Receive Maximum messages are unacknowledged: memory
stays bounded and the backlog waits in the broker.

Shutdown (SIGTERM): stop intake → flush what was received → acknowledge → publish ``offline`` →
disconnect, all within ``INGEST_SHUTDOWN_DEADLINE_S``. Anything not committed by then is simply not
acknowledged, and the broker delivers it again to the next session.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections import Counter
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry

from core.errors import StorageError
from core.logging import correlated
from core.metrics import MetricsServer, Readiness
from core.runtime import tune_gc
from ingestor.batching import Batch, InboundMessage, add_failure, add_message
from ingestor.metrics import IngestorMetrics
from ingestor.mqtt import MqttIntake
from ingestor.settings import IngestorSettings
from ingestor.store import ReadingStore, StatementRejected, WriteResult

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.2
BUSY_POLL_S = 0.005


class Ingestor:
    """One ingestor process (or one of several in a test)."""

    def __init__(
        self, settings: IngestorSettings, *, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = IngestorMetrics(self.registry)
        self._limits = settings.limits
        self._queue: queue.Queue[InboundMessage] = queue.Queue(settings.ingest_queue_max_messages)
        self.metrics.queue_depth.set_function(self._queue.qsize)
        self._store = ReadingStore(
            settings.dsn,
            require_registered=settings.require_registered_sensors,
            statement_timeout_ms=settings.ingest_statement_timeout_ms,
            reject_cap=settings.ingest_reject_payload_max_bytes,
        )
        self.intake = MqttIntake(settings, self._queue, self.metrics)
        self._released = 0  # messages acknowledged or given back (written by the writer only)
        self.metrics.held.set_function(lambda: self.intake.delivered - self._released)
        self._db_state: tuple[bool, str] = (False, "not connected yet")
        self.readiness = Readiness()
        self.readiness.add("database", lambda: self._db_state)
        self.readiness.add("broker", self.intake.readiness)
        self._stop = threading.Event()
        self._stop_at: float | None = None
        self.totals: Counter[str] = Counter()
        self._received: dict[str, Any] = {}  # label children cached: labels() takes a lock
        self.server: MetricsServer | None = None
        # At most one batch waits while another is being written: enough to keep both busy.
        self._batches: queue.Queue[Batch] = queue.Queue(1)
        self._closing = False  # set by the decoder once it has handed over its last batch
        self._writer_failed = False
        self._unwritten = 0  # messages of a batch the writer gave up on at the deadline

    # ---------------------------------------------------------------- lifecycle

    def request_stop(self) -> None:
        """Begin a graceful shutdown (safe from a signal handler or another thread)."""
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        self._stop.set()

    def run(self) -> int:
        """Serve until ``request_stop``; return the process exit code."""
        s = self.settings
        self.server = MetricsServer(
            self.registry, self.readiness, s.ingest_metrics_host, s.ingest_metrics_port
        ).start()
        self._probe_db()
        self.intake.start()
        writer = threading.Thread(target=self._write_loop, name="ingestor-writer", daemon=True)
        writer.start()
        try:
            batch = Batch()
            while not self._stop.is_set():
                self._collect(batch, block=True)
                if batch:
                    self._hand_over(batch)
                    batch = Batch()
            self._drain()
        finally:
            self._closing = True
            writer.join(s.ingest_shutdown_deadline_s + 5)
            self.intake.stop()
            self._store.close()
            self.server.stop()
        self._count_left()
        log.info(
            "ingestor stopped: %s", " ".join(f"{k}={v}" for k, v in sorted(self.totals.items()))
        )
        return 1 if self._writer_failed else 0

    def _drain(self) -> None:
        """Hand over what the queue still holds, until it is empty or the deadline passes."""
        self.intake.close_intake()
        while not self._past_deadline():
            batch = Batch()
            self._collect(batch, block=False)
            if not batch or not self._hand_over(batch):
                break

    def _hand_over(self, batch: Batch) -> bool:
        """Give ``batch`` to the writer, waiting while it is busy (that is the backpressure).
        False when the shutdown deadline passed or the writer is gone."""
        while not self._past_deadline() and not self._writer_failed:
            try:
                self._batches.put(batch, timeout=IDLE_POLL_S)
                return True
            except queue.Full:
                continue
        self._unwritten += len(batch)
        return False

    def _count_left(self) -> None:
        left = self._unwritten + self._queue.qsize()
        while not self._batches.empty():
            left += len(self._batches.get_nowait())
        if left:
            self.totals["left_unacked"] += left
            log.warning(
                "shutdown deadline: %d messages left unacknowledged (the broker will "
                "redeliver them)",
                left,
            )

    def _deadline(self) -> float | None:
        if self._stop_at is None:
            return None
        return self._stop_at + self.settings.ingest_shutdown_deadline_s

    def _past_deadline(self) -> bool:
        deadline = self._deadline()
        return deadline is not None and time.monotonic() >= deadline

    # ---------------------------------------------------------------- batching

    def _collect(self, batch: Batch, *, block: bool) -> None:
        """Add messages to ``batch`` until it is full by rows, or old enough *and* the writer
        can take it (or, with ``block=False``, until the queue is empty)."""
        max_rows = self.settings.ingest_batch_max_rows
        max_age_s = self.settings.ingest_batch_max_age_ms / 1000
        while True:
            if not block:
                timeout = 0.0
            elif batch:
                timeout = max_age_s - batch.age_s()
                if timeout <= 0:
                    if not self._batches.full():
                        return
                    timeout = BUSY_POLL_S  # writer busy: let the batch grow meanwhile
            elif self._stop.is_set():
                return
            else:
                timeout = IDLE_POLL_S
            try:
                msg = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                if not block:
                    return
                continue
            self._accept(batch, msg)
            if batch.is_full(max_rows):
                return

    def _accept(self, batch: Batch, msg: InboundMessage) -> None:
        """The one guard per message: whatever happens, the message ends up in the batch as
        rows or as a reject, and the stream moves on."""
        counter = self._received.get(msg.kind)
        if counter is None:
            counter = self._received[msg.kind] = self.metrics.messages_received.labels(msg.kind)
        counter.inc()
        try:
            lag = add_message(
                batch,
                msg,
                limits=self._limits,
                reject_cap=self.settings.ingest_reject_payload_max_bytes,
            )
        except Exception as exc:
            with correlated(f"mqtt-{msg.generation}-{msg.mid}"):
                log.exception(
                    "could not handle a message on %s; stored as internal_error", msg.topic
                )
            add_failure(batch, msg, exc, reject_cap=self.settings.ingest_reject_payload_max_bytes)
        else:
            if lag is not None:
                self.metrics.lag.observe(lag)

    # ---------------------------------------------------------------- writing

    def _write_loop(self) -> None:
        """The writer thread: write batches in order until the decoder is done."""
        try:
            while True:
                try:
                    batch = self._batches.get(timeout=IDLE_POLL_S)
                except queue.Empty:
                    if self._closing:
                        return
                    if not self._db_state[0]:
                        self._probe_db()  # keep /health/ready truthful while idle
                    continue
                if not self._flush(batch):
                    self._unwritten += len(batch)
                    return
        except Exception:
            # A bug, not a bad message (those are handled per message): stop cleanly rather
            # than leave the decoder waiting on a writer that is gone.
            log.exception("the writer failed; shutting down")
            self._writer_failed = True
            self.request_stop()

    def _flush(self, batch: Batch) -> bool:
        """Write ``batch`` (retrying with backoff while the database is away), then acknowledge
        it. Returns False only when the shutdown deadline passed first."""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                result = self._write(batch)
                break
            except StorageError as exc:
                attempt += 1
                delay = min(self.settings.ingest_db_retry_max_s, 0.05 * 2**attempt)
                self._db_down(exc, attempt, len(batch))
                deadline = self._deadline()
                if deadline is not None and time.monotonic() + delay >= deadline:
                    return False
                if deadline is None:
                    self._stop.wait(delay)
                else:
                    time.sleep(delay)
        self.metrics.flush_duration.observe(time.perf_counter() - started)
        if not self._db_state[0]:
            log.info("database is back; batch written after %d retries", attempt)
        self._db_state = (True, "ok")
        self.metrics.db_up.set(1)
        self._acknowledge(batch)
        self._count(batch, result)
        return True

    def _write(self, batch: Batch) -> WriteResult:
        try:
            return self._store.write(batch)
        except StatementRejected as exc:
            log.warning(
                "database refused a batch (%s); writing its %d messages one by one", exc, len(batch)
            )
            return self._write_each(batch)

    def _write_each(self, batch: Batch) -> WriteResult:
        """Isolate the message(s) the database refuses; each becomes a ``storage_rejected``."""
        cap = self.settings.ingest_reject_payload_max_bytes
        inserted, duplicates, rejected = 0, 0, Counter[str]()
        for msg in batch.messages:
            single = Batch()
            self._accept_quietly(single, msg)
            try:
                r = self._store.write(single)
            except StatementRejected as exc:
                single = Batch()
                single.reject(msg, "storage_rejected", str(exc), cap=cap)
                r = self._store.write(single)
            inserted += r.inserted
            duplicates += r.duplicates
            rejected.update(r.rejected)
        return WriteResult(inserted, duplicates, rejected)

    def _accept_quietly(self, batch: Batch, msg: InboundMessage) -> None:
        try:
            add_message(
                batch,
                msg,
                limits=self._limits,
                reject_cap=self.settings.ingest_reject_payload_max_bytes,
            )
        except Exception as exc:  # already logged when the message first arrived
            add_failure(batch, msg, exc, reject_cap=self.settings.ingest_reject_payload_max_bytes)

    def _db_down(self, exc: StorageError, attempt: int, messages: int) -> None:
        self._db_state = (False, f"database unavailable: {exc}"[:300])
        self.metrics.db_up.set(0)
        self.metrics.flush_failures.labels(type(exc.__cause__ or exc).__name__).inc()
        # First failure and then every 20th: an outage should not flood the log.
        if attempt == 1 or attempt % 20 == 0:
            log.warning(
                "batch of %d messages not written (attempt %d): %s; retrying, nothing "
                "is acknowledged meanwhile",
                messages,
                attempt,
                exc,
            )

    def _probe_db(self) -> None:
        try:
            self._store.connect()
        except StorageError as exc:
            self._db_state = (False, str(exc)[:300])
            self.metrics.db_up.set(0)
        else:
            self._db_state = (True, "ok")
            self.metrics.db_up.set(1)

    def _acknowledge(self, batch: Batch) -> None:
        acked = skipped = 0
        for msg in batch.messages:
            if self.intake.ack(msg):
                acked += 1
            else:
                skipped += 1
        self._released += acked + skipped
        self.metrics.messages_acked.inc(acked)
        if skipped:
            self.metrics.acks_skipped.inc(skipped)
        self.totals["acked"] += acked
        self.totals["acks_skipped"] += skipped

    def _count(self, batch: Batch, result: WriteResult) -> None:
        m = self.metrics
        m.rows_written.inc(result.inserted)
        m.duplicates_skipped.inc(result.duplicates)
        m.batch_rows.observe(len(batch.rows))
        for reason, n in result.rejected.items():
            m.rejected.labels(reason).inc(n)
        self.totals["messages"] += len(batch)
        self.totals["rows_written"] += result.inserted
        self.totals["duplicates"] += result.duplicates
        self.totals["rejected"] += sum(result.rejected.values())


def run_forever(settings: IngestorSettings) -> int:
    """Run an ingestor in this (main) thread until SIGTERM or SIGINT."""
    ingestor = Ingestor(settings)
    tune_gc()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        ingestor.request_stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return ingestor.run()
