"""The ERD image: a Graphviz graph of the reflected tables, rendered to PNG with ``dot``."""

from __future__ import annotations

import html
import shutil
import subprocess
from pathlib import Path

from scripts.db_docs.catalog import Table

HEAD_COLOR = {"table": "#2c3e50", "materialized view": "#6c3483", "view": "#6c3483"}


def _row(t: Table, name: str) -> str:
    c = t.column(name)
    marks = []
    if name in t.primary_key:
        marks.append("PK")
    if name in t.fk_columns():
        marks.append("FK")
    if not c.not_null:
        marks.append("null")
    esc = html.escape
    # Graphviz refuses an empty <FONT>; an empty cell is fine.
    flags = f'<FONT COLOR="#1f618d">{" ".join(marks)}</FONT>' if marks else ""
    bold = (lambda s: f"<B>{s}</B>") if name in t.primary_key else (lambda s: s)
    return (
        f'<TR><TD PORT="{esc(name)}_w" ALIGN="LEFT">{bold(esc(name))}</TD>'
        f'<TD ALIGN="LEFT"><FONT COLOR="#555555">{esc(c.short_type)}</FONT></TD>'
        f'<TD PORT="{esc(name)}_e" ALIGN="LEFT">{flags}</TD></TR>'
    )


def node(t: Table) -> str:
    title = html.escape(t.name) + (f" ({t.kind})" if t.kind != "table" else "")
    rows = [
        f'<TR><TD COLSPAN="3" BGCOLOR="{HEAD_COLOR[t.kind]}">'
        f'<FONT COLOR="white"><B>{title}</B></FONT></TD></TR>'
    ]
    if t.comment:
        rows.append(
            f'<TR><TD COLSPAN="3" ALIGN="LEFT" BGCOLOR="#f4f6f7">'
            f'<FONT POINT-SIZE="9"><I>{html.escape(t.comment)}</I></FONT></TD></TR>'
        )
    rows += [_row(t, c.name) for c in t.columns]
    label = '<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4">'
    return f'  "{t.name}" [label=<{label}{"".join(rows)}</TABLE>>];'


def to_dot(tables: list[Table], head: str) -> str:
    lines = [
        "digraph sensorpipe {",
        f'  graph [rankdir=LR, fontname="Helvetica", fontsize=12, nodesep=0.4, ranksep=1.0,'
        f' labelloc=t, label="sensorpipe schema (Alembic head {head}, plain PostgreSQL path)\\n'
        'PK primary key, FK foreign key, null = nullable; lines run from one row to many"];',
        '  node [shape=plain, fontname="Helvetica", fontsize=10];',
        # One (tee) at the referenced row, many (crow) at the referencing rows.
        '  edge [color="#566573", arrowhead=crow, arrowtail=tee, dir=both];',
    ]
    lines += [node(t) for t in tables]
    for t in tables:
        for fk in t.foreign_keys:
            label = f' [label=<<FONT POINT-SIZE="8">on delete {fk.on_delete}</FONT>>]'
            parent = f'"{fk.ref_table}":"{fk.ref_columns[0]}_e":e'
            child = f'"{t.name}":"{fk.columns[0]}_w":w'
            lines.append(f"  {parent} -> {child}{label if fk.on_delete else ''};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_png(dot_source: str, out: Path) -> None:
    dot = shutil.which("dot")
    if dot is None:
        raise SystemExit("Graphviz `dot` is not installed (apt-get install graphviz)")
    subprocess.run(
        [dot, "-Tpng", "-Gdpi=110", "-o", str(out)],
        input=dot_source.encode(),
        check=True,
        timeout=60,
    )
