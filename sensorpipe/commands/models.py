"""``sensorpipe models``: list, verify, activate, roll back, shadow and promote model versions.

Every change goes through ``core.registry`` (checksums verified before a version becomes active or
shadow). Running services pick a change up on SIGHUP or ``POST /api/v1/models/reload``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

HELP = "manage trained model versions: list | verify | activate | rollback | shadow | promote"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models-dir",
        default=os.environ.get("MODELS_DIR", "models"),
        help="registry directory (default: $MODELS_DIR or ./models)",
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="every stored version, with active/shadow marks and metrics")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("verify", help="check every artifact's sha256; exit 1 if any fails")
    act = sub.add_parser("activate", help="make NAME VERSION the active version")
    act.add_argument("name")
    act.add_argument("version", type=int)
    rb = sub.add_parser("rollback", help="re-activate the previously active version of NAME")
    rb.add_argument("name")
    sh = sub.add_parser("shadow", help="run NAME VERSION in shadow beside the active version")
    sh.add_argument("name")
    sh.add_argument("version", type=int, nargs="?")
    sh.add_argument("--clear", action="store_true", help="stop the shadow run of NAME")
    pr = sub.add_parser("promote", help="activate NAME's shadow version if its figures hold")
    pr.add_argument("name")
    pr.add_argument("--min-scored", type=int, default=1000)
    pr.add_argument("--min-agreement", type=float, default=0.95)
    pr.add_argument("--max-error-ratio", type=float, default=1.0)
    pr.add_argument("--force", action="store_true", help="promote even if the figures do not hold")
    hi = sub.add_parser("history", help="activation, rollback, shadow and promotion events")
    hi.add_argument("name", nargs="?")


def run(args: argparse.Namespace) -> int:
    from core import registry

    models_dir = Path(args.models_dir)
    action: str = args.action
    if action == "list":
        return _list(models_dir, as_json=args.json)
    if action == "verify":
        return _verify(models_dir)
    if action == "activate":
        previous = registry.activate(models_dir, args.name, args.version)
        print(f"{args.name}: active v{args.version} (was {_v(previous)})")
    elif action == "rollback":
        version = registry.rollback(models_dir, args.name)
        print(f"{args.name}: rolled back to v{version}")
    elif action == "shadow":
        return _shadow(models_dir, args)
    elif action == "promote":
        criteria = registry.PromotionCriteria(
            min_scored=args.min_scored,
            min_agreement=args.min_agreement,
            max_error_ratio=args.max_error_ratio,
        )
        version = registry.promote(models_dir, args.name, criteria, force=args.force)
        print(f"{args.name}: promoted v{version} to active")
    elif action == "history":
        for e in registry.history(models_dir, args.name):
            print(
                f"{e['at']}  {e['action']:<9} {e['name']} {_v(e['version'])} "
                f"(was {_v(e['previous'])})"
            )
    return 0


def _v(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def _list(models_dir: Path, *, as_json: bool) -> int:
    from dataclasses import asdict

    from core import registry

    versions = registry.list_versions(models_dir)
    if as_json:
        print(json.dumps([asdict(v) for v in versions], indent=2))
        return 0
    if not versions:
        print(f"no models in {models_dir}")
        return 0
    print(
        f"{'name':<20} {'ver':>4}  {'state':<7} {'trained_at':<21} {'size':>9}  metrics (first 4)"
    )
    for v in versions:
        state = "active" if v.active else "shadow" if v.shadow else ""
        size = _size(v.size_bytes)
        numeric = [(k, x) for k, x in sorted(v.metrics.items()) if isinstance(x, int | float)]
        metrics = ", ".join(f"{k}={_fmt(x)}" for k, x in numeric[:4])
        print(
            f"{v.name:<20} {v.version:>4}  {state:<7} {v.trained_at or '?':<21} {size:>9}  "
            f"{metrics}"
        )
    return 0


def _size(n: int | None) -> str:
    if n is None:
        return "missing"
    return f"{n} B" if n < 1024 else f"{n / 1024:.0f} KiB"


def _fmt(x: object) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _verify(models_dir: Path) -> int:
    from core import registry

    results = registry.verify(models_dir)
    bad = [r for r in results if not r.ok]
    for r in results:
        mark = "ok  " if r.ok else "FAIL"
        print(f"{mark} {r.name} v{r.version}: {r.reason} — {r.detail}")
    print(f"{len(results) - len(bad)} ok, {len(bad)} failed")
    return 1 if bad or not results else 0


def _shadow(models_dir: Path, args: argparse.Namespace) -> int:
    from core import registry

    if args.clear:
        version = registry.clear_shadow(models_dir, args.name)
        print(f"{args.name}: shadow {_v(version)} stopped")
        return 0
    if args.version is None:
        print("sensorpipe models shadow: give VERSION, or --clear")
        return 2
    registry.set_shadow(models_dir, args.name, args.version)
    print(
        f"{args.name}: v{args.version} runs in shadow (never alerts); "
        f"`sensorpipe models promote {args.name}` once its figures hold"
    )
    return 0
