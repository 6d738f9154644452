"""Reflect the ``public`` schema from the PostgreSQL catalog into plain dataclasses.

Everything is ordered by name (tables, constraints, indexes) or by column position, so two
reflections of the same schema are identical whatever the creation order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

SHORT_TYPES = {
    "timestamp with time zone": "timestamptz",
    "double precision": "float8",
    "character varying": "varchar",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    default: str | None
    identity: bool
    comment: str | None

    @property
    def short_type(self) -> str:
        for long, short in SHORT_TYPES.items():
            if self.type.startswith(long):
                return short + self.type[len(long) :]
        return self.type


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str | None


@dataclass(frozen=True)
class Index:
    name: str
    columns: str  # the key list as PostgreSQL prints it, e.g. "sensor_id, opened_at DESC"
    method: str  # btree, brin, gin, ...
    unique: bool
    primary: bool
    predicate: str | None


@dataclass
class Table:
    name: str
    kind: str  # table | materialized view | view
    comment: str | None
    columns: list[Column] = field(default_factory=list)
    primary_key: tuple[str, ...] = ()
    unique: list[tuple[str, ...]] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def fk_columns(self) -> set[str]:
        return {c for fk in self.foreign_keys for c in fk.columns}


KINDS = {"r": "table", "p": "table", "m": "materialized view", "v": "view"}
ON_DELETE = {"c": "cascade", "n": "set null", "d": "set default", "r": "restrict", "a": None}

TABLES_SQL = """
SELECT c.oid, c.relname, c.relkind, obj_description(c.oid, 'pg_class')
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'm', 'v')
ORDER BY c.relname
"""

COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '', col_description(a.attrelid, a.attnum)
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

CONSTRAINTS_SQL = """
SELECT con.conname, con.contype, pg_get_constraintdef(con.oid),
       ARRAY(SELECT attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute ON attrelid = con.conrelid AND attnum = k.n ORDER BY k.i),
       con.confrelid::regclass::text,
       ARRAY(SELECT attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute ON attrelid = con.confrelid AND attnum = k.n ORDER BY k.i),
       con.confdeltype
FROM pg_constraint con
WHERE con.conrelid = %s
ORDER BY con.contype, con.conname
"""

INDEXES_SQL = """
SELECT i.relname, pg_get_indexdef(x.indexrelid), x.indisunique, x.indisprimary,
       pg_get_expr(x.indpred, x.indrelid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = %s
ORDER BY i.relname
"""

TRIGGERS_SQL = """
SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t
WHERE t.tgrelid = %s AND NOT t.tgisinternal ORDER BY t.tgname
"""


def split_keys(keys: str) -> list[str]:
    """Split a key list on its top-level commas (an expression key may hold commas)."""
    parts, depth, cur = [], 0, ""
    for ch in keys:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [*parts, cur.strip()]


def index_method(indexdef: str) -> str:
    return indexdef.split(" USING ", 1)[1].split(" ", 1)[0]


def key_list(indexdef: str) -> str:
    """The parenthesised key list after ``USING <method>`` in an index definition."""
    start = indexdef.index("(", indexdef.index(" USING "))
    depth = 0
    for i in range(start, len(indexdef)):
        depth += {"(": 1, ")": -1}.get(indexdef[i], 0)
        if depth == 0:
            return indexdef[start + 1 : i]
    raise ValueError(f"unbalanced index definition: {indexdef}")


def reflect(dsn: str, *, exclude: frozenset[str] = frozenset()) -> list[Table]:
    with psycopg.connect(dsn) as conn:
        tables = []
        for oid, name, kind, comment in conn.execute(TABLES_SQL).fetchall():
            if name in exclude:
                continue
            t = Table(name, KINDS[kind], comment)
            t.columns = [Column(*row) for row in conn.execute(COLUMNS_SQL, [oid]).fetchall()]
            _constraints(conn, oid, t)
            for iname, idef, unique, primary, pred in conn.execute(INDEXES_SQL, [oid]).fetchall():
                t.indexes.append(
                    Index(iname, key_list(idef), index_method(idef), unique, primary, pred)
                )
            t.triggers = [r[0] for r in conn.execute(TRIGGERS_SQL, [oid]).fetchall()]
            tables.append(t)
    return tables


def _constraints(conn: psycopg.Connection, oid: int, t: Table) -> None:
    rows = conn.execute(CONSTRAINTS_SQL, [oid]).fetchall()
    for name, ctype, definition, cols, ref_table, ref_cols, deltype in rows:
        if ctype == "p":
            t.primary_key = tuple(cols)
        elif ctype == "u":
            t.unique.append(tuple(cols))
        elif ctype == "f":
            t.foreign_keys.append(
                ForeignKey(name, tuple(cols), ref_table, tuple(ref_cols), ON_DELETE[deltype])
            )
        elif ctype == "c":
            t.checks.append(definition)
