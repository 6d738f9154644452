#!/usr/bin/env bash
# Regenerate docs/db/schema.sql (pg_dump --schema-only + the TimescaleDB-only statements)
# from a freshly migrated database. Starts a private PostgreSQL (tests/servers.py), so no running
# database is needed. Extra arguments go to `python -m scripts.db_docs schema`
# (--out DIR, --dsn URL-of-an-EMPTY-database).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" -m scripts.db_docs schema "$@"
