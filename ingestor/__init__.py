"""The ingestor: MQTT readings → PostgreSQL/TimescaleDB, durably, idempotently and fast.

``Ingestor`` (in ``worker``) is the whole component; ``run_forever`` runs it as a process.
"""

from __future__ import annotations

from ingestor.settings import IngestorSettings
from ingestor.worker import Ingestor, run_forever

__all__ = ["Ingestor", "IngestorSettings", "run_forever"]
