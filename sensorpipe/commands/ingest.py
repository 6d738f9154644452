"""``sensorpipe ingest``: store MQTT readings in the database (at-least-once into an idempotent
table; acknowledged only after COMMIT)."""

from __future__ import annotations

import argparse

HELP = "run the ingestor: MQTT sensors/+/readings and sensors/+/senml -> database"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--client-id", help="fixed MQTT client id (INGEST_CLIENT_ID)")
    p.add_argument(
        "--metrics-port",
        type=int,
        help="port of /metrics and /health/ready (INGEST_METRICS_PORT, default 9101)",
    )
    p.add_argument("--batch-max-rows", type=int, help="INGEST_BATCH_MAX_ROWS")
    p.add_argument("--batch-max-age-ms", type=int, help="INGEST_BATCH_MAX_AGE_MS")


def run(args: argparse.Namespace) -> int:
    from core.settings import load_settings
    from ingestor.settings import IngestorSettings
    from ingestor.worker import run_forever

    settings = load_settings(
        IngestorSettings,
        "ingest",
        ingest_client_id=args.client_id,
        ingest_metrics_port=args.metrics_port,
        ingest_batch_max_rows=args.batch_max_rows,
        ingest_batch_max_age_ms=args.batch_max_age_ms,
    )
    return run_forever(settings)
