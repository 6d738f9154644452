"""``sensorpipe keys``: create, list and revoke API keys (the key is printed once, at creation)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from api.security import KeyInfo

HELP = "create, list and revoke API keys"


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="create a key and print it (shown only this once)")
    c.add_argument("--name", required=True, help="unique name, e.g. the client's name")
    c.add_argument(
        "--scopes",
        required=True,
        help="comma-separated: data:ingest, reports:read, ml:predict, admin",
    )
    c.add_argument(
        "--rate-limit",
        type=int,
        default=600,
        metavar="N",
        help="requests per minute (per API process), default 600",
    )
    sub.add_parser("list", help="list keys (prefix, scopes, last use; never the secret)")
    r = sub.add_parser("revoke", help="revoke a key by name")
    r.add_argument("name")


def run(args: argparse.Namespace) -> int:
    from api import security
    from core.db import connect
    from core.settings import DatabaseSettings, load_settings

    settings = load_settings(DatabaseSettings, None)
    with connect(settings.dsn, autocommit=False) as conn:
        if args.keys_command == "create":
            key, info = security.create_key(
                conn, args.name, args.scopes.split(","), args.rate_limit
            )
            print(key)
            print(
                f"# key {info.name!r} (prefix {info.prefix}), scopes {','.join(info.scopes)}, "
                f"{info.rate_limit_per_min}/min. Store it now: it is not shown again."
            )
        elif args.keys_command == "list":
            _print_table(security.list_keys(conn))
        else:
            security.revoke_key(conn, args.name)
            print(f"revoked {args.name!r}")
    return 0


def _print_table(keys: list[KeyInfo]) -> None:
    rows = [("NAME", "PREFIX", "SCOPES", "RATE/MIN", "CREATED", "LAST USED", "STATUS")]
    for k in keys:
        rows.append(
            (
                k.name,
                k.prefix,
                ",".join(k.scopes),
                str(k.rate_limit_per_min),
                f"{k.created_at:%Y-%m-%d %H:%M}",
                f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "-",
                "revoked" if k.revoked_at else "active",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
