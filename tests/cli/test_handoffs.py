"""Every molvae output is a valid input of the next command without options; blank lines are not molecules."""

from __future__ import annotations

import json

import numpy as np
import pytest

from molvae.cli.main import main
from tests.conftest import moses_smiles


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ref") / "ref.smi"
    path.write_text("\n".join(moses_smiles(300, "test")) + "\n")
    return str(path)


def test_the_output_of_properties_feeds_encode_and_evaluate(small_model_dir, reference, tmp_path, capsys) -> None:
    """`molvae properties` writes smiles and canonical_smiles; the next commands take smiles without asking."""
    molecules = moses_smiles(30, "test", offset=1000)
    (tmp_path / "in.smi").write_text("\n".join(molecules) + "\n")
    props = tmp_path / "props.csv"
    assert main(["properties", "--input", str(tmp_path / "in.smi"), "--out", str(props)]) == 0
    assert (
        main(["encode", "--model", str(small_model_dir), "--input", str(props), "--out", str(tmp_path / "z.npy")]) == 0
    )
    assert np.load(tmp_path / "z.npy").shape == (30, 32)
    assert (
        main(
            [
                "evaluate",
                "--solubility-sample",  # Solubility_W (ADMET-AI) has its own test: test_admet_cli.py
                "0",
                "--samples",
                str(props),
                "--reference",
                reference,
                "--train",
                "none",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 30 and metrics["metrics"]["valid"] == 1.0
    capsys.readouterr()


def test_blank_lines_of_a_smiles_list_are_not_samples(reference, tmp_path, capsys) -> None:
    """Five trailing blank lines took validity from 1.0 to 0.8 here; in a table an empty cell still counts."""
    molecules = moses_smiles(20, "test", offset=2000)
    (tmp_path / "s.smi").write_text("\n".join(molecules) + "\n" * 6)
    assert (
        main(
            [
                "evaluate",
                "--solubility-sample",  # Solubility_W (ADMET-AI) has its own test: test_admet_cli.py
                "0",
                "--samples",
                str(tmp_path / "s.smi"),
                "--reference",
                reference,
                "--train",
                "none",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 20 and metrics["metrics"]["valid"] == 1.0
    assert "5 blank lines left out (not molecules)" in capsys.readouterr().err
    # a sample table's empty cell is an empty generation: invalid, and counted
    (tmp_path / "s.csv").write_text("smiles\n" + "\n".join(molecules) + '\n""\n')
    assert (
        main(
            [
                "evaluate",
                "--solubility-sample",  # Solubility_W (ADMET-AI) has its own test: test_admet_cli.py
                "0",
                "--samples",
                str(tmp_path / "s.csv"),
                "--reference",
                reference,
                "--train",
                "none",
                "--out",
                str(tmp_path / "eval2"),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "eval2" / "metrics.json").read_text())
    assert metrics["n"] == 21 and metrics["metrics"]["valid"] == pytest.approx(20 / 21)


@pytest.mark.parametrize("columns", [("SMILES", "smiles"), ("smiles", "smiles ")])
def test_two_columns_of_the_same_name_still_need_a_choice(tmp_path, capsys, columns) -> None:
    (tmp_path / "t.csv").write_text(",".join(columns) + "\nCCO,CCN\n")
    assert main(["properties", "--input", str(tmp_path / "t.csv"), "--out", str(tmp_path / "p.csv")]) == 2
    assert "several SMILES columns" in capsys.readouterr().err
