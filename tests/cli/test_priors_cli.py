"""`molvae fit-prior` and `--prior` on sample, evaluate and info, end to end on a small trained model."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from molvae.cli.main import main
from tests.conftest import moses_smiles


@pytest.fixture
def model_dir(small_model_dir, tmp_path):
    shutil.copytree(small_model_dir, tmp_path / "model")
    return tmp_path / "model"


def _fit(model_dir, *extra: str) -> int:
    return main(
        [
            "fit-prior",
            "--model",
            str(model_dir),
            "--n",
            "500",
            "--flow-steps",
            "60",
            "--flow-hidden",
            "32",
            "--gmm-components",
            "3",
            *extra,
        ]
    )


def test_fit_prior_then_sample_with_it(model_dir, tmp_path, capsys) -> None:
    assert _fit(model_dir, "--kind", "flow", "--default") == 0
    assert _fit(model_dir, "--kind", "gmm") == 0
    out = capsys.readouterr().out
    assert "active dimensions" in out and "now the model's default prior" in out
    meta = json.loads((model_dir / "priors" / "flow.json").read_text())
    assert meta["kind"] == "flow" and meta["fit"]["molecules"] == 500 and meta["fit"]["config"]["steps"] == 60
    assert meta["settings"]["hidden"] == 32

    tables = {}
    for prior in ("auto", "flow", "gmm", "standard"):
        path = tmp_path / f"{prior}.csv"
        assert (
            main(
                ["sample", "--model", str(model_dir), "--prior", prior, "--n", "50", "--seed", "1", "--out", str(path)]
            )
            == 0
        )
        tables[prior] = pd.read_csv(path)
    assert "(flow prior)" in capsys.readouterr().out
    assert tables["auto"].equals(tables["flow"])  # --default made flow the model's prior
    assert not tables["flow"].equals(tables["standard"]) and not tables["gmm"].equals(tables["flow"])

    assert main(["info", "--model", str(model_dir)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("priors"))
    assert "standard;" in line and "flow over" in line and "fitted to 500 molecules of moses [default]" in line
    assert main(["info", "--model", str(model_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["priors"]["default"] == "flow" and set(summary["priors"]["stored"]) == {"flow", "gmm"}


def test_fit_prior_refusals(model_dir, capsys) -> None:
    assert _fit(model_dir, "--kind", "gmm") == 0
    capsys.readouterr()
    assert _fit(model_dir, "--kind", "gmm") == 2
    assert "already has a prior named 'gmm'" in capsys.readouterr().err
    assert _fit(model_dir, "--kind", "gmm", "--overwrite") == 0
    assert _fit(model_dir, "--kind", "gmm", "--name", "standard") == 2
    assert "prior name 'standard'" in capsys.readouterr().err
    assert _fit(model_dir, "--kind", "gmm", "--gmm-components", "0") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "components" in err


def test_sample_with_an_unknown_prior_is_one_line(model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "s.csv"
    assert main(["sample", "--model", str(model_dir), "--prior", "flow", "--n", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no prior named 'flow'" in err
    assert not out.exists()


def test_a_stored_pickle_prior_is_refused_by_the_cli(model_dir, tmp_path, capsys) -> None:
    assert _fit(model_dir, "--kind", "gmm") == 0
    (model_dir / "priors" / "gmm.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 40)
    assert (
        main(["sample", "--model", str(model_dir), "--prior", "gmm", "--n", "5", "--out", str(tmp_path / "s.csv")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "never unpickles" in err


def test_evaluate_prints_a_row_per_prior(model_dir, tmp_path, capsys) -> None:
    assert _fit(model_dir, "--kind", "gmm") == 0
    ref = tmp_path / "ref.smi"
    ref.write_text("\n".join(moses_smiles(300, "test")) + "\n")
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model_dir),
                "--prior",
                "all",
                "--n",
                "40",
                "--reconstruction",
                "0",
                "--reference",
                str(ref),
                "--train",
                "none",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "model (standard prior)" in printed and "model (gmm prior)" in printed
    table = pd.read_csv(out / "metrics.csv")
    assert list(table["prior"]) == ["standard", "gmm"]
    data = json.loads((out / "metrics.json").read_text())
    assert set(data["priors"]) == {"standard", "gmm"} and data["prior"] == "standard"
    assert data["metrics"] == data["priors"]["standard"]
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model_dir),
                "--prior",
                "gmm,gmm",
                "--n",
                "5",
                "--train",
                "none",
                "--out",
                str(tmp_path / "e2"),
            ]
        )
        == 2
    )
    assert "distinct" in capsys.readouterr().err


def test_explore_with_a_learned_prior(model_dir, capsys) -> None:
    assert _fit(model_dir, "--kind", "gmm") == 0
    capsys.readouterr()
    assert main(["explore", "CCOc1ccccc1", "--model", str(model_dir), "--prior", "gmm", "--n", "20"]) == 0
    assert "20 draws at radius 0.5 (gmm prior)" in capsys.readouterr().out
