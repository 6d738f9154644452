"""docs/architecture.svg is generated from docs/architecture.dot: it must show the same graph.

Compared by graph content (node names, edge count, labels), not bytes: Graphviz output depends on
the fonts installed, so an exact diff would fail on a machine with other fonts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOT = REPO / "docs" / "architecture.dot"
SVG = REPO / "docs" / "architecture.svg"


def graph_of_dot(text: str) -> tuple[set[str], int]:
    body = re.sub(r"//.*", "", text)
    nodes = set(re.findall(r"^\s*([a-z_]+)\s+\[label=", body, re.MULTILINE))
    edges = len(re.findall(r"^\s*[a-z_]+\s*->\s*[a-z_]+", body, re.MULTILINE))
    return nodes, edges


def graph_of_svg(text: str) -> tuple[set[str], int]:
    nodes = set(re.findall(r'<g id="node\d+" class="node">\s*<title>([^<]+)</title>', text))
    edges = len(re.findall(r'class="edge"', text))
    return nodes, edges


def test_committed_svg_shows_the_graph_of_the_dot_source() -> None:
    nodes, edges = graph_of_dot(DOT.read_text())
    assert len(nodes) >= 10 and edges >= 15
    assert graph_of_svg(SVG.read_text()) == (nodes, edges), (
        "docs/architecture.svg is stale: run scripts/render_architecture.sh"
    )
    assert (REPO / "docs" / "architecture.png").stat().st_size > 10_000


def test_the_render_script_produces_that_graph(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.fail("Graphviz `dot` is missing (scripts/system-deps.sh installs it)")
    out = subprocess.run(["dot", "-Tsvg", str(DOT)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert graph_of_svg(out.stdout) == graph_of_dot(DOT.read_text())
    assert "render_architecture.sh" in (REPO / "docs" / "architecture.md").read_text()
