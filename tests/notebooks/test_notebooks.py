"""The user notebooks under notebooks/: each runs to the end in SMOKE mode.

The execution tests run every notebook in a fresh ``python3`` kernel with
``MOLVAE_SMOKE=1`` (tiny sizes) and the working directory in a temporary folder,
so whatever the notebooks write (runs/, pictures) lands there. They load the
model named in the notebook (the bundled pretrained one) unless ``MOLVAE_MODEL``
is set in the environment that runs the tests. The executed notebooks are kept
in the temporary folder for inspection; the committed ones are only read (their
stored outputs, from normal-size runs, are checked in test_staleness.py).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = ["01_train_on_zinc.ipynb", "02_interpolate_drugs.ipynb", "03_optimize_properties.ipynb"]
CELL_TIMEOUT_S = 300


def _stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "stream" and out.name == "stdout"
    )


def _summary(nb: nbformat.NotebookNode, number: str) -> str:
    lines = [line for line in _stdout(nb).splitlines() if line.startswith(f"SUMMARY {number}:")]
    assert len(lines) == 1, f"expected one 'SUMMARY {number}:' line in the output, got {lines}"
    return lines[0]


def _images(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type in ("display_data", "execute_result")
    )


def execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("MOLVAE_SMOKE", "1")
    # The kernel imports molvae from this checkout, like the tests do.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    committed = (NOTEBOOK_DIR / name).read_bytes()
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / f"executed_{name}")
    print(f"{name}: executed in {time.perf_counter() - start:.1f} s")
    # The committed notebook keeps its normal-size outputs: a smoke run never writes to it.
    assert (NOTEBOOK_DIR / name).read_bytes() == committed
    errors = [
        out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs if out.output_type == "error"
    ]
    assert not errors, errors
    return nb


@pytest.mark.slow
def test_01_train_on_zinc(tmp_path, monkeypatch) -> None:
    nb = execute("01_train_on_zinc.ipynb", tmp_path, monkeypatch)
    summary = _summary(nb, "01")
    match = re.search(r"(\d+)/(\d+) prior samples valid", summary)
    assert match and int(match.group(2)) > 0, summary
    run = tmp_path / "runs" / "nb01-smoke"
    assert (run / "model.safetensors").is_file() and (run / "metrics.csv").is_file()
    stdout = _stdout(nb)
    assert "MOSES VAE" in stdout and "this model" in stdout  # the comparison table was printed
    assert _images(nb) >= 1  # the training curves (the sample grid only if a sample was valid)


@pytest.mark.slow
def test_02_interpolate_drugs(tmp_path, monkeypatch) -> None:
    nb = execute("02_interpolate_drugs.ipynb", tmp_path, monkeypatch)
    summary = _summary(nb, "02")
    for method in ("linear", "slerp"):
        match = re.search(rf"{method} (\d+)/(\d+) steps valid", summary)
        assert match and int(match.group(1)) <= int(match.group(2)), summary
    assert re.search(r"slerp between fitted ends \d+/\d+ steps valid", summary), summary
    assert re.search(r"neighbourhood of \w+: (\d+)/(\d+) draws valid", summary), summary
    assert _images(nb) >= 6  # three path grids, the profiles, the neighbour grid, the radius scan


@pytest.mark.slow
def test_03_optimize_properties(tmp_path, monkeypatch) -> None:
    nb = execute("03_optimize_properties.ipynb", tmp_path, monkeypatch)
    summary = _summary(nb, "03")
    from molvae.chemistry import admet

    for run in ("esol", "esol-similar", "qed", "pareto", *(["admet-lead"] if admet.available() else [])):
        assert re.search(rf"{run}: \d+ oracle calls", summary), summary
        assert (tmp_path / "runs" / "nb03-smoke" / run / "evaluations.csv").is_file()
    assert _images(nb) >= 4  # three progress plots and the Pareto front (grids only where something was feasible)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_sizes_are_in_the_parameter_cell(name) -> None:
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{name} has no code cells"
    # One parameter cell at the top: everything the smoke run shrinks derives from it.
    assert 'os.environ.get("MOLVAE_SMOKE"' in code[0].source, f"{name}: the first code cell must read MOLVAE_SMOKE"
    later = [i for i, cell in enumerate(code[1:], start=1) if "MOLVAE_SMOKE" in cell.source]
    assert not later, f"{name}: code cells {later} read MOLVAE_SMOKE; sizes belong in the parameter cell"


def test_notebook_set_is_complete() -> None:
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
