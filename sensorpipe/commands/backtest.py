"""``sensorpipe backtest``: replay a CSV through the streaming scorer and write per-row scores."""

from __future__ import annotations

import argparse
import sys

HELP = "replay a CSV of readings through the exact streaming scorer (causally); write scores"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input",
        required=True,
        help="CSV with columns timestamp,value[,sensor_id] (any case; ';' or tab separated with "
        "a decimal comma too); timestamps ISO 8601 or epoch seconds, milliseconds, microseconds "
        "or nanoseconds",
    )
    p.add_argument("--output", required=True, help="CSV to write (one row per input row)")
    p.add_argument("--tz", default="UTC", help="time zone of naive timestamps (default UTC)")
    p.add_argument(
        "--models-dir",
        default=None,
        help="model registry (default: ./models, else the models/ shipped with the code)",
    )
    p.add_argument(
        "--sensor-col",
        default="sensor_id",
        help="column naming the series (optional in the input; default sensor_id)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from tqdm import tqdm

    from core.errors import ConfigError, ModelError
    from core.registry import default_models_dir, load_active
    from core.scoring import FEATURE_NAMES, Scorer, ScoringConfig
    from core.scoring.backtest import run_backtest

    try:
        tz = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {args.tz!r}") from exc
    src = Path(args.input)
    if not src.is_file():
        raise ConfigError(f"input file {src} does not exist")
    models = Path(args.models_dir) if args.models_dir else default_models_dir()
    try:
        detector = load_active(models, "anomaly_detector", expected_features=FEATURE_NAMES)
        forecaster = load_active(models, "forecaster")
    except ModelError as exc:
        raise ModelError(
            exc.reason,
            f"{exc.detail}. Backtest scores with the registry's trained models only (fitting on "
            f"the input would use later data to judge earlier readings); run `sensorpipe train` "
            f"or pass --models-dir",
        ) from exc
    scorer = Scorer(ScoringConfig(), detector, forecaster)
    # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first column's name.
    with src.open(newline="", encoding="utf-8-sig") as f:
        total = max(sum(1 for _ in f) - 1, 0)
    with (
        src.open(newline="", encoding="utf-8-sig") as source,
        Path(args.output).open("w", newline="") as sink,
        tqdm(total=total, unit="rows", desc="backtest", disable=None, file=sys.stderr) as bar,
    ):
        result = run_backtest(
            scorer, source, sink, tz=tz, sensor_col=args.sensor_col, progress=bar.update
        )
    print(
        f"scored {result.scored} of {result.rows} rows of {result.sensors} series with "
        f"{scorer.model_version} + {scorer.forecaster_version}: {result.anomalies} anomalous; "
        f"wrote {args.output}"
    )
    if result.bad_rows:
        print(
            f"warning: {result.bad_rows} rows had an unreadable timestamp, value or sensor and "
            f"were written with empty scores",
            file=sys.stderr,
        )
    return 0
