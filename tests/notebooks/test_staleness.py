"""The committed notebooks hold outputs of their current code and bundled models (nothing is executed here).

``scripts/execute_notebooks.py`` executes a notebook at its normal sizes and stamps it with a
digest of its code cells and the identity of the bundled models it used; the check compares
those stamps with the notebook and the models as they are now. The tests below also edit
copies of a committed notebook to show that the check catches each kind of staleness.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

from molvae.model import pretrained_dir

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = ["01_train_on_zinc.ipynb", "02_interpolate_drugs.ipynb", "03_optimize_properties.ipynb"]
# The notebook that loads a bundled model, for the tests that change one.
WITH_MODEL = "02_interpolate_drugs.ipynb"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("execute_notebooks", REPO / "scripts" / "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return _script()


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_outputs_are_fresh(name, script) -> None:
    nb = _read(name)
    nbformat.validate(nb)
    problems = script.staleness_problems(nb)
    assert not problems, f"{name}: {problems}; re-make the outputs with python scripts/execute_notebooks.py"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_shows_results(name, script) -> None:
    """Figures to look at, the first cell's facts, and a file small enough to browse."""
    size = (NOTEBOOK_DIR / name).stat().st_size
    assert size <= script.MAX_BYTES, f"{name}: {size:,} bytes"
    nb = _read(name)
    images = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]
    assert images, f"{name}: no figure in the outputs"
    facts = nb.cells[0]
    stamp = nb.metadata[script.STAMP_KEY]
    assert facts.cell_type == "markdown" and script._format_duration(stamp["wall_s"]) in facts.source
    for parameter, value in stamp["parameters"].items():
        assert f"`{parameter} = {value}`" in facts.source
    assert stamp["parameters"], f"{name}: no sizes were stamped"
    assert not any("smoke" in str(value) for value in stamp["parameters"].values())


def test_model_notebooks_stamp_the_bundled_model(script) -> None:
    """Notebooks 2 and 3 load the bundled zinc-smiles; notebook 1 trains its own model."""
    for name in ("02_interpolate_drugs.ipynb", "03_optimize_properties.ipynb"):
        assert set(_read(name).metadata[script.STAMP_KEY]["models"]) == {"zinc-smiles"}, name
    assert _read("01_train_on_zinc.ipynb").metadata[script.STAMP_KEY]["models"] == {}


def test_edited_code_cell_is_stale(script) -> None:
    nb = _read(WITH_MODEL)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    code[1].source += "\nprint('one more line')"
    assert any("code cells changed" in p for p in script.staleness_problems(nb))
    # Moving a line across a cell boundary changes the digest too.
    nb = _read(WITH_MODEL)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    head, _, last = code[0].source.rpartition("\n")
    code[0].source, code[1].source = head, last + "\n" + code[1].source
    assert any("code cells changed" in p for p in script.staleness_problems(nb))


def test_edited_size_is_stale(script) -> None:
    nb = _read("01_train_on_zinc.ipynb")
    params = next(cell for cell in nb.cells if cell.cell_type == "code")
    params.source = params.source.replace("SEED = 0", "SEED = 1")
    assert params.source.endswith("SEED = 1")
    assert any("code cells changed" in p for p in script.staleness_problems(nb))


def test_removed_outputs_are_stale(script) -> None:
    nb = _read(WITH_MODEL)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    assert "no outputs" in script.staleness_problems(nb)
    nb = _read(WITH_MODEL)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    assert any("execution counts" in p for p in script.staleness_problems(nb))


def test_cells_run_out_of_order_or_with_errors_are_stale(script) -> None:
    nb = _read(WITH_MODEL)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    code[1].execution_count, code[2].execution_count = code[2].execution_count, code[1].execution_count
    assert any("execution counts" in p for p in script.staleness_problems(nb))
    nb = _read(WITH_MODEL)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    code[3].outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="x", traceback=[]))
    assert any("error outputs" in p for p in script.staleness_problems(nb))


def test_smoke_or_unstamped_outputs_are_stale(script) -> None:
    nb = _read(WITH_MODEL)
    nb.metadata[script.STAMP_KEY]["smoke"] = True
    assert any("not from a normal-size run" in p for p in script.staleness_problems(nb))
    nb = _read(WITH_MODEL)
    del nb.metadata[script.STAMP_KEY]
    assert script.staleness_problems(nb) == ["no execution stamp: never executed by scripts/execute_notebooks.py"]
    nb = _read(WITH_MODEL)
    nb.cells.pop(0)
    assert any("first cell" in p for p in script.staleness_problems(nb))


def test_changed_stamped_model_digest_is_stale(script) -> None:
    nb = _read(WITH_MODEL)
    identity = nb.metadata[script.STAMP_KEY]["models"]["zinc-smiles"]
    identity["weights_sha256"] = "0" * 64
    assert any("'zinc-smiles' changed" in p and "weights_sha256" in p for p in script.staleness_problems(nb))


def test_new_bundled_model_makes_outputs_stale(script, tmp_path) -> None:
    """A copy of the bundled models' folder in which zinc-smiles changes, as a retrained model would."""
    nb = _read(WITH_MODEL)
    root = tmp_path / "pretrained"
    shutil.copytree(pretrained_dir(), root)
    assert script.staleness_problems(nb, models_root=root) == []
    # A refitted prior samples differently: stale although the weights are the same.
    prior = next((root / "zinc-smiles" / "priors").glob("*.safetensors"))
    prior.write_bytes(prior.read_bytes() + b"\0")
    problems = script.staleness_problems(nb, models_root=root)
    assert any("priors_sha256" in p and "weights_sha256" not in p for p in problems), problems
    weights = root / "zinc-smiles" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\1")
    assert any("weights_sha256" in p for p in script.staleness_problems(nb, models_root=root))
    shutil.rmtree(root / "zinc-smiles")
    assert any("no longer bundled" in p for p in script.staleness_problems(nb, models_root=root))


def test_check_command_exit_status(tmp_path) -> None:
    cmd = [sys.executable, "scripts/execute_notebooks.py", "--check"]
    fresh = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    nb = _read(WITH_MODEL)
    next(cell for cell in nb.cells if cell.cell_type == "code").source += "\n"
    edited = tmp_path / WITH_MODEL
    nbformat.write(nb, edited)
    stale = subprocess.run([*cmd, str(edited)], cwd=REPO, capture_output=True, text=True)
    assert stale.returncode == 1 and "code cells changed" in stale.stdout, stale.stdout + stale.stderr
