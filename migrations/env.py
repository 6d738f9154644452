"""Alembic environment: raw-SQL migrations against DATABASE_URL (psycopg 3 driver).

``-x timescale=on|off|auto`` chooses the TimescaleDB path; ``auto`` (the default) asks the
server's ``pg_available_extensions``. Offline mode (``alembic upgrade --sql``) cannot ask, so it
renders the plain path unless ``-x timescale=on`` is given — that is how the Timescale-only SQL is
rendered for review.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("DATABASE_URL is not set")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def run_offline() -> None:
    context.configure(url=_url(), literal_binds=True, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=None, transaction_per_migration=True
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
