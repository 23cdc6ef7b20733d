"""Without the admet extra: one line says how to install it, and everything else works. Runs with and without
ADMET-AI installed: where it is, an import hook in the subprocess refuses it, as a machine without it would."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from molvae import chemistry

MISSING = textwrap.dedent(
    """
    import importlib.abc, sys

    class Refuse(importlib.abc.MetaPathFinder):
        # admet_ai installed but unreachable: what a machine without the extra sees
        def find_spec(self, name, path=None, target=None):
            if name == "admet_ai" or name.startswith("admet_ai."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Refuse())
    from molvae.cli.main import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args", [["optimize", "--objectives", "solubility,qed"], ["properties", "--input", "{smi}", "--admet"]]
)
def test_without_the_extra_one_line_says_how_to_install_it(tmp_path, args) -> None:
    smi = tmp_path / "in.smi"
    smi.write_text("CCO\n")
    argv = [a.format(smi=smi) for a in args] + ["--out", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, "-c", MISSING, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "molvae[admet]"' in lines[0] and "esol" in lines[0], done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_without_the_extra_the_default_properties_still_work(tmp_path) -> None:
    smi = tmp_path / "in.smi"
    smi.write_text("CCO\nxx(\n")
    out = tmp_path / "props.csv"
    argv = ["properties", "--input", str(smi), "--out", str(out)]
    done = subprocess.run([sys.executable, "-c", MISSING, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert list(pd.read_csv(out).columns[3:]) == chemistry.default_properties()
