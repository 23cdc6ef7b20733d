"""`molvae evaluate` end to end on small MOSES slices."""

from __future__ import annotations

import json

import pandas as pd

from molvae.cli.main import main
from tests.conftest import moses_smiles


def _write_smi(path, smiles):
    path.write_text("\n".join(smiles) + "\n")
    return str(path)


def test_evaluate_samples_csv(tmp_path, capsys):
    gen = moses_smiles(700, "test", offset=3000) + [f"C1CC(=O{i}" for i in range(300)]
    # the CSV molvae sample writes: smiles, valid, generated
    pd.DataFrame({"smiles": gen, "valid": [True] * 700 + [False] * 300, "generated": gen}).to_csv(
        tmp_path / "samples.csv", index=False
    )
    ref = _write_smi(tmp_path / "ref.smi", moses_smiles(2000, "test"))
    train = _write_smi(tmp_path / "train.smi", moses_smiles(2000, "train"))
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--solubility-sample",  # Solubility_W (ADMET-AI) has its own test: test_admet_cli.py
            "0",
            "--samples",
            str(tmp_path / "samples.csv"),
            "--reference",
            ref,
            "--train",
            train,
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "MOSES VAE" in printed and "samples.csv" in printed
    data = json.loads((out / "metrics.json").read_text())
    assert data["n"] == 1000
    assert data["metrics"]["valid"] == 0.70
    assert data["metrics"]["Novelty"] == 1.0  # test molecules are not in train
    table = pd.read_csv(out / "metrics.csv")
    assert table.loc[0, "valid"] == 0.70 and "FCD/Test" in table.columns


def test_missing_samples_file(tmp_path, capsys):
    code = main(["evaluate", "--samples", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "eval")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.csv" in err and "no such file" in err
    assert not (tmp_path / "eval").exists()


def test_evaluate_model_samples_and_reconstructs(small_model_dir, small_model, tmp_path, capsys):
    from molvae.data import resolve_data_source, sample_smiles
    from molvae.metrics import active_units, reconstruction_rate

    ref = _write_smi(tmp_path / "ref.smi", moses_smiles(300, "test"))
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--model",
            str(small_model_dir),
            "--n",
            "60",
            "--reconstruction",
            "25",
            "--reference",
            ref,
            "--train",
            "none",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["n"] == 60
    path, column = resolve_data_source("moses-test")
    recon_set = sample_smiles(path, 25, seed=0, column=column)  # --seed's default
    assert data["metrics"]["reconstruction@25"] == reconstruction_rate(small_model, recon_set)
    units = data["metrics"]["active_units@25"]
    assert units == active_units(small_model.encode(recon_set)) and 0 < units <= small_model.config.latent_dim
    printed = capsys.readouterr().out
    assert "reconstruction@25" in printed and f"active_units@25={units}\n" in printed  # an integer, not 32.000
