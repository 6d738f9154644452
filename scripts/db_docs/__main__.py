"""``python -m scripts.db_docs {schema,erd,explain,all} [--out docs/db] [--dsn URL]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scripts.db_docs import catalog, dbml, erd, schema_sql
from scripts.db_docs.fresh import fresh_database, head_revision
from tests.servers import REPO, pg_bindir

EXCLUDE = frozenset({"alembic_version"})  # Alembic's bookkeeping, not part of the data model


def write_schema(dsn: str, out: Path) -> Path:
    path = out / "schema.sql"
    path.write_text(schema_sql.render(dsn, pg_bindir(), head_revision(dsn)))
    return path


def write_erd(dsn: str, out: Path) -> list[Path]:
    tables = catalog.reflect(dsn, exclude=EXCLUDE)
    head = head_revision(dsn)
    (out / "erd.dbml").write_text(dbml.render(tables, head))
    erd.render_png(erd.to_dot(tables, head), out / "erd.png")
    return [out / "erd.dbml", out / "erd.png"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.db_docs", description=__doc__)
    p.add_argument("what", choices=["schema", "erd", "explain", "all"])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "db")
    p.add_argument("--dsn", help="an EMPTY database to migrate and document (default: private)")
    p.add_argument("--quick", action="store_true", help="explain: a small table (iteration)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with fresh_database(args.dsn) as dsn:
        if args.what in ("schema", "all"):
            written.append(write_schema(dsn, args.out))
        if args.what in ("erd", "all"):
            written += write_erd(dsn, args.out)
        if args.what in ("explain", "all"):
            from scripts.db_docs import explain

            written.append(explain.run(dsn, args.out / "explain.md", quick=args.quick))
    for path in written:
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
