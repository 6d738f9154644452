"""``sensorpipe score``: the streaming scorer (anomaly alerts) for one shard of the sensors."""

from __future__ import annotations

import argparse

HELP = "score readings as they arrive and publish anomaly alerts (one process per shard)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="score the sensors of shard I of N (default: SCORER_SHARD or 0/1)",
    )
    p.add_argument("--models-dir", default=None, help="model registry folder (default: models)")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="port of /metrics and /health/ready (default: 9102)",
    )


def run(args: argparse.Namespace) -> int:
    from core.settings import load_settings
    from scorer.__main__ import run as run_scorer
    from scorer.settings import ScorerSettings

    settings = load_settings(
        ScorerSettings,
        "scorer",
        scorer_shard=args.shard,
        models_dir=args.models_dir,
        scorer_metrics_port=args.metrics_port,
    )
    return run_scorer(settings)
