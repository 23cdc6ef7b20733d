"""Molecule grids are written the same inside a Jupyter kernel, where RDKit patches its drawing functions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_draw_grid_with_rdkit_ipython_console_loaded(tmp_path) -> None:
    # `import rdkit` in a Jupyter kernel imports IPythonConsole, which replaces
    # Draw.MolsToGridImage with a function returning IPython Image/SVG objects.
    # A subprocess keeps that global patch out of this test session.
    pytest.importorskip("IPython")
    script = (
        "import sys\n"
        "from rdkit.Chem import Draw\n"
        "from rdkit.Chem.Draw import IPythonConsole\n"
        "assert Draw._MolsToGridImageSaved is not None  # the patch is in place\n"
        "from molvae.visualize import draw_grid\n"
        "smiles = ['CCO', 'c1ccccc1', 'not a molecule'] * 20  # 60 cells: the patched function keeps 50\n"
        "draw_grid(smiles, sys.argv[1] + '/grid.png', mols_per_row=10)\n"
        "draw_grid(smiles, sys.argv[1] + '/grid.svg', mols_per_row=10)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    png = (tmp_path / "grid.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as image:
        assert image.size == (10 * 260, 6 * 220)  # all 60 cells, 6 rows of 10
    svg = (tmp_path / "grid.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and svg.count("<rect") >= 1
