"""The layering rule of DESIGN.md, checked on the source: ``core`` ← components ← ``sensorpipe``.

Components (``ingestor``, ``scorer``, ``api``, ``simulators``) import ``core`` and third-party
libraries, never each other; ``core`` imports no component; nothing below ``sensorpipe`` imports
``sensorpipe`` (the CLI is the only place that wires components together). Every ``import``,
``from … import`` (relative ones resolved) and literal ``importlib.import_module("…")`` /
``__import__("…")`` counts, including those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = frozenset({"ingestor", "scorer", "api", "simulators"})
LAYERED = ("core", *sorted(COMPONENTS))
# Never importable from a layered package, whatever the package.
FORBIDDEN_EVERYWHERE = frozenset({"sensorpipe", "tests", "benchmarks", "scripts", "migrations"})


def forbidden_for(package: str) -> frozenset[str]:
    if package == "core":
        return COMPONENTS | FORBIDDEN_EVERYWHERE
    return (COMPONENTS - {package}) | FORBIDDEN_EVERYWHERE


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            yield node.lineno, name
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (
                    isinstance(node.func, ast.Name)
                    and node.func.id in ("__import__", "import_module")
                )
            )
        ):
            yield node.lineno, node.args[0].value


def violations(root: Path) -> list[str]:
    found = []
    for package in LAYERED:
        for path in sorted((root / package).rglob("*.py")):
            mod = module_name(path, root)
            banned = forbidden_for(package)
            for line, name in imported_modules(path.read_text(), mod, path.name == "__init__.py"):
                top = name.split(".")[0]
                if top in banned:
                    found.append(f"{path.relative_to(root)}:{line}: {package} imports {name}")
    return found


def test_repository_respects_the_layers() -> None:
    assert (REPO / "core" / "wire.py").exists()
    assert violations(REPO) == []


def test_every_layered_package_is_scanned() -> None:
    scanned = {p for p in LAYERED if any((REPO / p).rglob("*.py"))}
    assert {"core", "simulators"} <= scanned


# The checker itself must be able to fail: each case plants one violation in a scratch tree.
@pytest.mark.parametrize(
    ("path", "source", "culprit"),
    [
        ("scorer/worker.py", "import ingestor.batching\n", "ingestor.batching"),
        ("api/app.py", "from simulators import simulate\n", "simulators"),
        ("core/wire.py", "from scorer.detectors import X\n", "scorer.detectors"),
        ("core/db.py", "import sensorpipe.config\n", "sensorpipe.config"),
        ("ingestor/sub/mod.py", "from ...api import routes\n", "api"),
        (
            "simulators/x.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from scorer import state\n",
            "scorer",
        ),
        (
            "api/deps.py",
            "import importlib\nm = importlib.import_module('scorer.state')\n",
            "scorer.state",
        ),
        ("scorer/__init__.py", "from ..sensorpipe import main\n", "sensorpipe"),
    ],
)
def test_checker_catches_violations(tmp_path: Path, path: str, source: str, culprit: str) -> None:
    for pkg in LAYERED:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("import core\nimport numpy\n")
    target = tmp_path / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source)
    found = violations(tmp_path)
    assert len(found) == 1, found
    assert found[0].endswith(culprit)


def test_checker_allows_core_own_package_and_third_party(tmp_path: Path) -> None:
    for pkg in LAYERED:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(
            f"import core.wire\nfrom core import topics\nimport {pkg}\nfrom . import x\n"
            "import paho.mqtt.client\nfrom psycopg import sql\n"
        )
    (tmp_path / "core" / "wire.py").write_text("from .topics import check_sensor_id\n")
    assert violations(tmp_path) == []
