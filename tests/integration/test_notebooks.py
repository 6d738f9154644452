"""The three notebooks run top to bottom on the project's code (quick slices of the data).

``SENSORPIPE_NB_QUICK=1`` makes each notebook use a slice of its data so it runs in seconds, and
``SENSORPIPE_FIG_DIR`` sends its figures to a temporary folder, so the test never rewrites the
committed charts in ``docs/ml``. The kernel is ``python3`` resolved by jupyter_client, which runs
it with this interpreter (``sys.executable``): the .venv's, with the project installed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = [
    "01_data_exploration.ipynb",
    "02_anomaly_isolation_forest.ipynb",
    "03_forecast_arima.ipynb",
]


def _execute(nb: nbformat.NotebookNode, timeout_s: int = 120) -> nbformat.NotebookNode:
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout_s,
        resources={"metadata": {"path": str(NB_DIR)}},
    )
    return client.execute()


def test_kernel_is_this_interpreter() -> None:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import sys, sensorpipe; print(sys.executable)")]
    )
    out = _execute(nb, timeout_s=60)
    printed = "".join(o.get("text", "") for o in out.cells[0].outputs).strip()
    assert Path(printed).resolve() == Path(sys.executable).resolve()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_saves_its_figures(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENSORPIPE_NB_QUICK", "1")
    monkeypatch.setenv("SENSORPIPE_FIG_DIR", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The data are small: one BLAS thread is faster, and on a shared 2-core machine several
    # threads per call oversubscribe the cores (statsmodels' ADF went from 0.15 s to 5 s).
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NB_DIR / name, as_version=4)
    out = _execute(nb)
    errors = [
        o for c in out.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert errors == []
    # Every figure the notebook names is written, so the docs' charts all come from here.
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    expected = set(re.findall(r"show\(fig, \"([\w.]+\.png)\"\)", source))
    assert expected, f"{name} saves no figure"
    assert expected <= {p.name for p in tmp_path.glob("*.png")}
    for png in expected:
        assert (ROOT / "docs" / "ml" / png).exists(), f"{png} is not committed under docs/ml"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_outputs_and_no_errors(name: str) -> None:
    doc = json.loads((NB_DIR / name).read_text())
    code = [c for c in doc["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), "commit the executed notebook"
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
