"""Database documentation generated from a freshly migrated database: ``docs/db/``.

``python -m scripts.db_docs schema|erd|explain|all`` (wrapped by ``scripts/export_schema.sh`` and
``scripts/generate_erd.sh``) starts a private PostgreSQL (``tests/servers.py``), migrates it to
the Alembic head on the plain-PostgreSQL path, and writes:

* ``schema.sql`` — ``pg_dump --schema-only`` without owner/ACL/version noise, plus the
  TimescaleDB-only statements rendered by ``sensorpipe.migrate.render_sql``;
* ``erd.dbml`` and ``erd.png`` — the ERD, reflected from the catalog and drawn with Graphviz;
* ``explain.md`` — ``EXPLAIN (ANALYZE, BUFFERS)`` of the product's hot queries on a table of a
  few million generated rows.

``tests/integration/test_db_docs.py`` regenerates ``schema.sql`` and ``erd.dbml`` and fails when
they differ from the committed files.
"""
