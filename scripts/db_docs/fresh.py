"""A freshly migrated database to document: a private PostgreSQL, or an empty one you name."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg

from sensorpipe.migrate import upgrade
from tests.servers import PgServer

DOCS_DB = "sensorpipe_docs"


@contextlib.contextmanager
def fresh_database(dsn: str | None = None) -> Iterator[str]:
    """Yield the DSN of a database migrated to head on the plain-PostgreSQL path.

    Without ``dsn`` a private server is started (``tests/servers.py``) and destroyed afterwards,
    so the documents never depend on what a shared database happens to hold.
    """
    if dsn is not None:
        upgrade(dsn, timescale="off")
        yield dsn
        return
    server = PgServer().start()
    try:
        url = server.create_db(DOCS_DB)
        upgrade(url, timescale="off")
        yield url
    finally:
        server.destroy()


def head_revision(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    if row is None:
        raise RuntimeError("database is not migrated")
    return str(row[0])
