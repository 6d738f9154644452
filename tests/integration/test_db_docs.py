"""The database documents cannot drift from the schema.

``docs/db/schema.sql`` and ``docs/db/erd.dbml`` are regenerated from a freshly migrated database
and must equal the committed files; every live table and column must be described in the data
dictionary ``docs/db/README.md``. After a new migration: ``bash scripts/export_schema.sh &&
bash scripts/generate_erd.sh``, then describe the new columns in the README.
"""

from __future__ import annotations

import difflib
import re
import uuid
from pathlib import Path

import pytest

from scripts.db_docs import catalog, dbml, schema_sql
from scripts.db_docs.__main__ import EXCLUDE
from scripts.db_docs.fresh import fresh_database, head_revision
from tests.servers import REPO, PgServer, pg_bindir

pytestmark = pytest.mark.integration

DOCS = REPO / "docs" / "db"
REGENERATE = "bash scripts/export_schema.sh && bash scripts/generate_erd.sh"


@pytest.fixture(scope="module")
def fresh_dsn(pg_server: PgServer) -> str:
    with fresh_database(pg_server.create_db(f"docs_{uuid.uuid4().hex[:10]}")) as dsn:
        return dsn


def assert_same(committed: Path, generated: str) -> None:
    current = committed.read_text() if committed.exists() else ""
    if current != generated:
        diff = difflib.unified_diff(
            current.splitlines(),
            generated.splitlines(),
            f"{committed.relative_to(REPO)} (committed)",
            "regenerated from the migrations",
            lineterm="",
        )
        excerpt = "\n".join(list(diff)[:80])
        pytest.fail(f"{committed.relative_to(REPO)} is out of date; run: {REGENERATE}\n{excerpt}")


def test_schema_sql_matches_the_migrations(fresh_dsn: str) -> None:
    generated = schema_sql.render(fresh_dsn, pg_bindir(), head_revision(fresh_dsn))
    assert "CREATE TABLE public.sensor_readings" in generated
    assert "add_retention_policy('sensor_readings', INTERVAL '180 days')" in generated
    noise = [ln for ln in generated.splitlines() if ln.startswith(("SET ", "SELECT pg_catalog"))]
    assert noise == []
    assert_same(DOCS / "schema.sql", generated)


def test_erd_dbml_matches_the_migrations(fresh_dsn: str) -> None:
    tables = catalog.reflect(fresh_dsn, exclude=EXCLUDE)
    generated = dbml.render(tables, head_revision(fresh_dsn))
    assert "Ref sensor_readings_sensor_id_fkey: sensor_readings.sensor_id > sensors.sensor_id" in (
        generated
    )
    assert_same(DOCS / "erd.dbml", generated)


def test_erd_image_is_committed() -> None:
    png = DOCS / "erd.png"
    assert png.exists(), f"run {REGENERATE}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def dictionary(readme: str) -> dict[str, set[str]]:
    """Table → columns described in the README: ``### `table` `` sections holding rows that
    start with ``| `column` |``."""
    described: dict[str, set[str]] = {}
    for section in re.split(r"^### ", readme, flags=re.M)[1:]:
        m = re.match(r"`(\w+)`", section)
        if m:
            described[m[1]] = set(re.findall(r"^\| `(\w+)` \|", section, flags=re.M))
    return described


def test_every_live_table_and_column_is_in_the_data_dictionary(fresh_dsn: str) -> None:
    described = dictionary((DOCS / "README.md").read_text())
    missing = [
        f"{t.name}.{c.name}"
        for t in catalog.reflect(fresh_dsn)
        for c in t.columns
        if c.name not in described.get(t.name, set())
    ]
    assert missing == [], f"describe these in docs/db/README.md: {missing}"


def test_dictionary_parser_notices_a_missing_column() -> None:
    readme = "### `t`\n\n| column | type |\n|---|---|\n| `a` | text |\n\n### `u`\n| `b` | x |\n"
    assert dictionary(readme) == {"t": {"a"}, "u": {"b"}}


def test_readme_links_the_documents() -> None:
    readme = (DOCS / "README.md").read_text()
    for name in ("erd.png", "erd.dbml", "schema.sql", "explain.md"):
        assert f"]({name})" in readme or f"]({name}#" in readme, name
        assert (DOCS / name).exists(), name
    assert REGENERATE.split(" && ")[0] in readme
