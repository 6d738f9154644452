"""The one error tree of sensorpipe.

Library errors (psycopg, paho, joblib, ...) are translated into these at the adapter that calls the
library, so the layers above handle a handful of domain errors, and the API maps them to HTTP
status codes in one table.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error sensorpipe raises on purpose."""


class ConfigError(PipelineError):
    """A setting is missing or malformed."""


class WireError(PipelineError):
    """A payload or topic does not follow the wire contract.

    ``reason`` is a short, stable code (``malformed_json``, ``invalid_value``, ...) used as the
    ``reason`` column of ``rejected_messages`` and the label of the rejected-messages counters.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StorageError(PipelineError):
    """The database is unreachable or refused a statement we expected to succeed."""


class BrokerError(PipelineError):
    """The MQTT broker is unreachable or refused us."""


class ModelError(PipelineError):
    """A model artifact is missing, corrupt or incompatible.

    ``reason`` is a short code (``missing``, ``checksum_mismatch``, ``incompatible``, ...).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class NotFoundError(PipelineError):
    """A named thing (sensor, model version, key) does not exist."""


class InsufficientDataError(PipelineError):
    """Not enough history to answer; ``needed`` and ``available`` say how much."""

    def __init__(self, detail: str, *, needed: int, available: int) -> None:
        super().__init__(detail)
        self.needed = needed
        self.available = available
