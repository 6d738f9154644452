"""``sensorpipe migrate``: wait for the database, then bring the schema to the head revision."""

from __future__ import annotations

import argparse

HELP = "apply database migrations (Alembic); waits for the database first"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    p.add_argument("--downgrade", action="store_true", help="downgrade to --revision instead")
    p.add_argument(
        "--timescale",
        choices=["auto", "on", "off"],
        default="auto",
        help="use TimescaleDB: auto = when pg_available_extensions has it",
    )
    p.add_argument(
        "--sql",
        action="store_true",
        help="print the SQL instead of running it (offline; no database needed)",
    )
    p.add_argument("--wait-s", type=float, default=60.0, help="how long to wait for the database")


def run(args: argparse.Namespace) -> int:
    from core.db import wait_for_db
    from core.settings import DatabaseSettings, load_settings
    from sensorpipe.migrate import downgrade, render_sql, upgrade

    if args.sql:
        print(
            render_sql(revision=args.revision, timescale="on" if args.timescale == "on" else "off")
        )
        return 0
    settings = load_settings(DatabaseSettings, "migrate")
    wait_for_db(settings.dsn, timeout_s=args.wait_s)
    if args.downgrade:
        downgrade(settings.dsn, args.revision, timescale=args.timescale)
    else:
        upgrade(settings.dsn, args.revision, timescale=args.timescale)
    print(f"database at revision {args.revision}")
    return 0
