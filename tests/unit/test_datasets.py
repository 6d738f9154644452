"""The committed ``datasets/`` are what ``scripts/make_datasets.py`` writes, byte for byte: every
figure read from them can be regenerated from the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_datasets_regenerates_every_committed_file(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/make_datasets.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    committed = sorted(p.relative_to(ROOT / "datasets") for p in (ROOT / "datasets").rglob("*.csv"))
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.csv"))
    assert written == committed
    assert Path("synthetic/forecast_long.csv") in committed
    for rel in committed:
        assert (tmp_path / rel).read_bytes() == (ROOT / "datasets" / rel).read_bytes(), rel
