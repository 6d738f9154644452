"""``sensorpipe`` command line: one sub-command per module in ``sensorpipe/commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from core.errors import PipelineError

# Each module defines HELP, configure(parser) and run(args) -> int, and keeps heavy imports inside
# run() so `sensorpipe --help` stays fast.
COMMANDS: dict[str, str] = {
    "up": "sensorpipe.commands.up",
    "migrate": "sensorpipe.commands.migrate",
    "ingest": "sensorpipe.commands.ingest",
    "score": "sensorpipe.commands.score",
    "api": "sensorpipe.commands.api",
    "simulate": "sensorpipe.commands.simulate",
    "train": "sensorpipe.commands.train",
    "backtest": "sensorpipe.commands.backtest",
    "models": "sensorpipe.commands.models",
    "keys": "sensorpipe.commands.keys",
    "acl": "sensorpipe.commands.acl",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sensorpipe", description="Event-driven telemetry pipeline for sensors."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module: ModuleType = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except PipelineError as exc:
        print(f"sensorpipe {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
