"""Static checks of the ``Dockerfile`` and its build context (no Docker engine runs here).

What a build would do that can be reproduced without an engine is: the build context the
``.dockerignore`` lets through, and ``pip install .`` from exactly that context; the rest is
checked on the parsed instructions: pinned base, multi-stage, non-root, no secrets.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|API_?KEY|PRIVATE", re.IGNORECASE)


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "dangling line continuation"
    return out


@cache
def parsed() -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, f"cannot parse FROM {rest}"
            image = re.sub(
                r"\$\{(\w+)\}|\$(\w+)", lambda v: args[v.group(1) or v.group(2)], m.group(1)
            )
            stages.append(Stage(image=image, name=m.group(2)))
        else:
            assert stages or keyword in ("ARG",), f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def final_stage() -> Stage:
    return parsed()[1][-1]


def test_multi_stage_build_with_a_runtime_stage_copying_from_build() -> None:
    _, stages = parsed()
    assert len(stages) >= 2
    assert stages[-1].name == "runtime"
    names = {s.name for s in stages[:-1]}
    copies_from = [
        rest for kw, rest in final_stage().instructions if kw == "COPY" and "--from=" in rest
    ]
    assert copies_from and all(
        re.search(r"--from=(\S+)", c).group(1) in names  # type: ignore[union-attr]
        for c in copies_from
    )
    # Build tools and the pip cache stay in the build stage.
    runtime_runs = " ".join(rest for kw, rest in final_stage().instructions if kw == "RUN")
    assert "pip install" not in runtime_runs and "apt-get" not in runtime_runs


def test_base_images_are_pinned_small_python_311() -> None:
    for stage in parsed()[1]:
        image = stage.image
        repo, _, tag = image.partition("@")[0].rpartition(":")
        assert repo == "python", image
        assert re.fullmatch(r"3\.11(\.\d+)?-slim-(bookworm|trixie)", tag), (
            f"{image}: pin Python 3.11 and a Debian release, slim variant"
        )


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for kw, rest in final_stage().instructions if kw == "USER"]
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) >= 1000, f"USER {users[-1]}: numeric, non-root"
    # Nothing after USER needs root again.
    last_user = max(i for i, (kw, _) in enumerate(final_stage().instructions) if kw == "USER")
    assert not [kw for kw, _ in final_stage().instructions[last_user:] if kw == "RUN"]
    created = " ".join(rest for kw, rest in final_stage().instructions if kw == "RUN")
    assert f"--uid {user}" in created


def test_entrypoint_is_sensorpipe_in_exec_form() -> None:
    entry = [rest for kw, rest in final_stage().instructions if kw == "ENTRYPOINT"]
    assert entry == ['["sensorpipe"]']


def test_installs_the_project_and_ships_migrations_and_models() -> None:
    build_runs = " ".join(
        rest for s in parsed()[1][:-1] for kw, rest in s.instructions if kw == "RUN"
    )
    assert re.search(r"pip install (\S+ )*\.(\s|$|&)", build_runs), "pip install ."
    copied = [
        rest.split()[-2]
        for kw, rest in final_stage().instructions
        if kw == "COPY" and "--from=" not in rest
    ]
    assert "migrations/" in copied and "models/" in copied
    env = " ".join(rest for kw, rest in final_stage().instructions if kw == "ENV")
    assert "MODELS_DIR=/app/models" in env
    workdir = [rest for kw, rest in final_stage().instructions if kw == "WORKDIR"]
    # `sensorpipe migrate` finds migrations/ in the working directory of an installed package.
    assert workdir[-1] == "/app"


def test_no_secrets_in_the_image_definition() -> None:
    for stage in parsed()[1]:
        for kw, rest in stage.instructions:
            if kw in ("ENV", "ARG", "LABEL"):
                assert not SECRET_WORDS.search(rest), f"{kw} {rest}: no secrets in the image"
            if kw in ("COPY", "ADD"):
                assert ".env" not in rest.split(), f"{kw} {rest}"
                assert kw != "ADD", "use COPY (ADD fetches URLs and unpacks archives)"
    assert not SECRET_WORDS.search(" ".join(parsed()[0]))


# --- the build context ---------------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, str]]:
    """(negated, pattern) in file order, as Docker reads .dockerignore."""
    out = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        out.append((neg, line.lstrip("!").strip("/")))
    return out


def _matches(pattern: str, path: str) -> bool:
    """Docker's matching: a pattern matches a path or any of its parent directories;
    ``**`` matches any number of directories."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
    regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return any(re.fullmatch(regex, p) for p in prefixes)


def in_context(path: str) -> bool:
    included = True
    for neg, pattern in dockerignore_patterns():
        if _matches(pattern, path):
            included = neg
    return included


def build_context() -> list[str]:
    files = []
    for root, dirs, names in os.walk(REPO):
        rel_root = Path(root).relative_to(REPO).as_posix()
        dirs[:] = [d for d in dirs if d not in (".git", ".venv", "node_modules")]
        for name in names:
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            if in_context(rel):
                files.append(rel)
    return sorted(files)


def test_dockerignore_matcher_follows_docker_rules() -> None:
    assert _matches("*", "core/wire.py")
    assert _matches("core", "core/wire.py")
    assert _matches("**/__pycache__", "core/__pycache__/wire.cpython-311.pyc")
    assert not _matches("core", "score/x.py")
    assert fnmatch.fnmatch("x", "*")  # the stdlib agrees on the simple case


def test_build_context_has_what_the_dockerfile_copies_and_no_secrets() -> None:
    context = build_context()
    assert ".env" not in context and not any(p.startswith(".git/") for p in context)
    assert not any(p.startswith(("tests/", ".venv/", "datasets/", "notebooks/")) for p in context)
    assert not any("__pycache__" in p for p in context)
    for stage in parsed()[1]:
        for kw, rest in stage.instructions:
            if kw != "COPY" or "--from=" in rest:
                continue
            sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
            for src in sources:
                src = src.rstrip("/")
                assert (REPO / src).exists(), f"COPY {src}: missing in the repository"
                assert (
                    any(p == src or p.startswith(src + "/") for p in context)
                    or (REPO / src).is_dir()
                ), f"COPY {src}: excluded by .dockerignore"


def test_pip_install_from_the_build_context_gives_a_working_sensorpipe(tmp_path: Path) -> None:
    """What the build stage does, on exactly the files the build would see: build the wheel,
    then run the installed package from a directory laid out like the image's /app."""
    ctx = tmp_path / "ctx"
    for rel in build_context():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, ctx / rel)
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(ctx)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("sensorpipe-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "site")
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "sensorpipe = sensorpipe.__main__:main" in zf.read(entry_points).decode()
    for package in ("core", "ingestor", "scorer", "api", "simulators", "sensorpipe"):
        assert f"{package}/__init__.py" in names, f"{package} is not in the wheel"
    assert any(n.startswith("api/static/") for n in names), "api/static is not in the wheel"
    # /app of the image: migrations/ and models/ (copied by the runtime stage), no sources.
    app = tmp_path / "app"
    app.mkdir()
    shutil.copytree(ctx / "migrations", app / "migrations")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(tmp_path / "site"),
        "PYTHONNOUSERSITE": "1",
    }
    where = subprocess.run(
        [sys.executable, "-c", "import sensorpipe, sys; print(sensorpipe.__file__)"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.startswith(str(tmp_path / "site")), where.stdout + where.stderr
    sql = subprocess.run(
        [sys.executable, "-m", "sensorpipe", "migrate", "--sql"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sql.returncode == 0, sql.stderr[-3000:]
    assert "CREATE TABLE sensor_readings" in sql.stdout


@pytest.mark.parametrize("path", ["pyproject.toml", "README.md", "core/wire.py", "migrations"])
def test_required_inputs_reach_the_build(path: str) -> None:
    assert in_context(path)
