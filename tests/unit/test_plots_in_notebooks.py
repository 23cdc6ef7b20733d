"""molvae's pictures work inside a notebook kernel and leave the notebook's own plotting alone.

Both tests run in a subprocess: the conditions they set up (RDKit's IPython
patches, a chosen matplotlib backend) are global to a process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return done


def test_draw_grid_with_rdkit_ipython_console_loaded(tmp_path) -> None:
    # `import rdkit` in a Jupyter kernel imports IPythonConsole, which replaces
    # Draw.MolsToGridImage with a function returning IPython Image/SVG objects.
    pytest.importorskip("IPython")
    _run(
        "import sys\n"
        "from rdkit.Chem import Draw\n"
        "from rdkit.Chem.Draw import IPythonConsole\n"
        "assert Draw._MolsToGridImageSaved is not None  # the patch is in place\n"
        "from molvae.visualize import draw_grid\n"
        "smiles = ['CCO', 'c1ccccc1', 'not a molecule'] * 20  # 60 cells: the patched function keeps 50\n"
        "draw_grid(smiles, sys.argv[1] + '/grid.png', mols_per_row=10)\n"
        "draw_grid(smiles, sys.argv[1] + '/grid.svg', mols_per_row=10)\n",
        str(tmp_path),
    )
    png = (tmp_path / "grid.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as image:
        assert image.size == (10 * 260, 6 * 220)  # all 60 cells, 6 rows of 10
    svg = (tmp_path / "grid.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<rect" in svg


def test_plots_keep_the_callers_matplotlib_backend(tmp_path) -> None:
    # A notebook plots through its inline backend; a library call that switched the
    # backend to Agg would silently turn every later plt.show() into a no-op.
    done = _run(
        "import sys\n"
        "import matplotlib\n"
        "import pandas as pd\n"
        "from molvae.optimization.report import plot_progress\n"
        "from molvae.visualize import plot_path_profile\n"
        "evals = pd.DataFrame({'call': [1, 2, 3], 'status': ['scored'] * 3, 'feasible': [True] * 3,\n"
        "                      'score': [0.1, 0.5, 0.3]})\n"
        "plot_progress(sys.argv[1] + '/progress.png', evals, ['score'], baselines={'prior': evals})\n"
        "path = pd.DataFrame({'step': [0, 1, 2], 'valid': [True, False, True], 'tanimoto_start': [1.0, None, 0.2],\n"
        "                     'tanimoto_end': [0.2, None, 1.0], 'qed': [0.5, None, 0.7],\n"
        "                     'duplicate_of_previous': [False, False, False]})\n"
        "plot_path_profile(path, sys.argv[1] + '/profile.png')\n"
        "print(matplotlib.get_backend())\n",
        str(tmp_path),
        env={"MPLBACKEND": "template"},
    )
    assert done.stdout.strip().lower() == "template"
    for name in ("progress.png", "profile.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
