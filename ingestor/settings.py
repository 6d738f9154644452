"""Settings of the ingestor: batching, bounds, MQTT session identity and the metrics port.

Every field is an environment variable of the same name in upper case (``INGEST_BATCH_MAX_ROWS``);
the shared ones (``DATABASE_URL``, ``MQTT_URL``, limits) come from ``core.settings.Settings``.
"""

from __future__ import annotations

import socket

from pydantic import Field, model_validator

from core.settings import Settings

COMPONENT = "ingestor"


class IngestorSettings(Settings):
    """The ingestor's own knobs. Defaults favour safety first, then throughput."""

    # A batch is flushed when it holds this many readings or its oldest message is this old.
    ingest_batch_max_rows: int = Field(5000, ge=1, le=100_000)
    ingest_batch_max_age_ms: int = Field(50, ge=1, le=60_000)
    # MQTT v5 Receive Maximum: how many unacknowledged messages the broker may have in flight to
    # us. Since we acknowledge only after COMMIT, this is the memory bound of the whole process.
    ingest_receive_maximum: int = Field(4000, ge=1, le=65_535)
    # The hand-off queue between the network thread and the writer; at least Receive Maximum,
    # plus room for redeliveries after a reconnect while old messages are still queued.
    ingest_queue_max_messages: int = Field(10_000, ge=1)
    ingest_client_id: str | None = Field(
        None, description="fixed MQTT client id; default sensorpipe-ingestor-<hostname>"
    )
    # Longer than any outage we promise to ride out: the broker keeps our subscription and queue.
    ingest_session_expiry_s: int = Field(7 * 86400, ge=0, le=2**32 - 1)
    # MQTT v5 shared-subscription group for running N ingestors side by side ("ingestors").
    # Empty (the default) is a plain subscription: Mosquitto 2.0 does not restore *shared*
    # subscriptions from its persistence file, so after a broker restart readings published
    # before the ingestors resubscribe would go nowhere. A plain subscription is restored.
    ingest_share_group: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="MQTT v5 shared-subscription group (e.g. ingestors); empty = plain",
    )
    ingest_metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the container
    ingest_metrics_port: int = Field(9101, ge=0, le=65_535)
    ingest_shutdown_deadline_s: float = Field(10.0, gt=0, le=600)
    ingest_db_retry_max_s: float = Field(5.0, gt=0, le=300)
    ingest_mqtt_reconnect_max_s: int = Field(30, ge=1, le=600)
    ingest_statement_timeout_ms: int = Field(30_000, ge=100)
    ingest_reject_payload_max_bytes: int = Field(4096, ge=0, le=1024 * 1024)

    @model_validator(mode="after")
    def _queue_holds_inflight(self) -> IngestorSettings:
        if self.ingest_queue_max_messages < self.ingest_receive_maximum:
            raise ValueError(
                "INGEST_QUEUE_MAX_MESSAGES must be >= INGEST_RECEIVE_MAXIMUM, or "
                "the network thread would block on a full queue"
            )
        return self

    @property
    def client_id(self) -> str:
        return self.ingest_client_id or f"sensorpipe-ingestor-{socket.gethostname()}"
