"""`--input -`: encode, reconstruct and properties read molecules from standard input."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from molvae.cli.main import main
from tests.conftest import DATA_DIR


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@pytest.mark.parametrize("suffix", [".smi", ".csv", ".sdf.gz"])
def test_properties_of_standard_input_equal_those_of_the_file(tmp_path, monkeypatch, capsys, suffix) -> None:
    src = tmp_path / f"messy{suffix}"
    if suffix == ".smi":
        src.write_bytes((DATA_DIR / "messy.smi").read_bytes())
    else:
        assert main(["properties", "-i", str(DATA_DIR / "messy.smi"), "-o", str(src), "--properties", "mw"]) == 0
    common = {".smi": ["--keep-columns", "name"], ".csv": ["--smiles-column", "smiles"], ".sdf.gz": []}[suffix]
    common += ["--properties", "mw,qed"]
    assert main(["properties", "-i", str(src), "-o", str(tmp_path / "file.csv"), *common]) == 0
    _stdin(monkeypatch, src.read_bytes())
    assert main(["properties", "-i", "-", "-o", str(tmp_path / "stdin.csv"), *common]) == 0
    assert (tmp_path / "stdin.csv").read_text() == (tmp_path / "file.csv").read_text()
    assert len(pd.read_csv(tmp_path / "stdin.csv")) >= 9


def test_encode_and_reconstruct_read_standard_input(small_model_dir, tmp_path, monkeypatch) -> None:
    smiles = b"CCOc1ccccc1\nC1CC\nCC(=O)Nc1ccc(O)cc1\n"
    model = ["--model", str(small_model_dir)]
    (tmp_path / "m.smi").write_bytes(smiles)
    assert main(["encode", *model, "-i", str(tmp_path / "m.smi"), "-o", str(tmp_path / "file.npy")]) == 0
    _stdin(monkeypatch, smiles)
    assert main(["encode", *model, "-i", "-", "-o", str(tmp_path / "stdin.npy")]) == 0
    file_z, stdin_z = np.load(tmp_path / "file.npy"), np.load(tmp_path / "stdin.npy")
    assert stdin_z.shape == (3, 32) and np.isnan(stdin_z[1]).all()
    assert np.array_equal(file_z, stdin_z, equal_nan=True)
    _stdin(monkeypatch, smiles)
    assert main(["reconstruct", *model, "-i", "-", "-o", str(tmp_path / "r.csv")]) == 0
    assert pd.read_csv(tmp_path / "r.csv")["encoded"].tolist() == [True, False, True]


def test_a_bad_line_on_standard_input_is_named_as_such(monkeypatch, capsys, tmp_path) -> None:
    _stdin(monkeypatch, b"id,SMILES\n1,CCO\n")
    assert main(["properties", "-i", "-", "-o", str(tmp_path / "p.csv"), "--smiles-column", "smiles"]) == 2
    err = capsys.readouterr().err
    assert err == "molvae properties: error: standard input: no column 'smiles'; columns found: id, SMILES\n"
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize(
    "command, data, needle",
    [
        (["properties"], b"", "--input -: standard input is empty"),
        (["decode"], b"CCO\n", "--input -: decode does not read standard input; name a file"),
    ],
)
def test_standard_input_refusals(monkeypatch, capsys, tmp_path, command, data, needle) -> None:
    _stdin(monkeypatch, data)
    assert main([*command, "-i", "-", "-o", str(tmp_path / "out.csv")]) == 2
    assert needle in capsys.readouterr().err


def test_a_terminal_is_not_read(monkeypatch, capsys, tmp_path) -> None:
    class Terminal(io.TextIOWrapper):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(io.BytesIO(b"CCO\n")))
    assert main(["properties", "-i", "-", "-o", str(tmp_path / "p.csv")]) == 2
    assert "standard input is a terminal" in capsys.readouterr().err


@pytest.mark.slow
def test_a_real_pipe_from_sample_to_properties(small_model_dir, tmp_path) -> None:
    """The two processes of `molvae sample -o - | molvae properties -i -`, joined by an OS pipe."""
    cli = [sys.executable, "-m", "molvae.cli.main"]
    sample = subprocess.Popen(
        [*cli, "sample", "--model", str(small_model_dir), "--n", "30", "--seed", "2", "-o", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    props = subprocess.run(
        [*cli, "properties", "-i", "-", "-o", str(tmp_path / "p.csv"), "--properties", "mw"],
        stdin=sample.stdout,
        capture_output=True,
        text=True,
        timeout=300,
    )
    sample.stdout.close()
    assert sample.wait(timeout=300) == 0 and props.returncode == 0, props.stderr
    table = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    # The piped table was read as a table (its smiles column, not whole lines): the same
    # molecules and validity as the seed's samples written to a file.
    assert (
        main(["sample", "--model", str(small_model_dir), "--n", "30", "--seed", "2", "-o", str(tmp_path / "s.csv")])
        == 0
    )
    samples = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    assert table["smiles"].tolist() == samples["smiles"].tolist()
    assert table["valid"].tolist() == samples["valid"].tolist() and samples["valid"].any()
