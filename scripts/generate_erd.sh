#!/usr/bin/env bash
# Regenerate docs/db/erd.dbml and docs/db/erd.png (Graphviz dot)
# from a freshly migrated database. Starts a private PostgreSQL (tests/servers.py), so no running
# database is needed. Extra arguments go to `python -m scripts.db_docs erd`
# (--out DIR, --dsn URL-of-an-EMPTY-database).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" -m scripts.db_docs erd "$@"
