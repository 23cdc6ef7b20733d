"""ADMET-AI through the CLI: `properties --admet`, a small `optimize --objective solubility` run, the help text."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from molvae import chemistry
from molvae.chemistry import admet
from molvae.cli.main import main

pytest.importorskip("admet_ai", reason="the admet extra is not installed")

MOLECULES = ["CC(=O)Oc1ccccc1C(=O)O", "not a smiles", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"]


def test_properties_admet_writes_every_endpoint_beside_molvaes_columns(tmp_path, capsys) -> None:
    src = tmp_path / "in.smi"
    src.write_text("\n".join(MOLECULES) + "\n")
    out = tmp_path / "props.csv"
    assert main(["properties", "--input", str(src), "--out", str(out), "--admet"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote 3 rows (1 invalid) to {out}"]  # ADMET-AI prints nothing
    table = pd.read_csv(out)
    endpoints = [f"admet:{key}" for key in admet.DIRECTIONS]
    assert list(table.columns[3:]) == [*chemistry.default_properties(), *endpoints]
    assert table.loc[1, endpoints].isna().all() and table.loc[[0, 2], endpoints].notna().all().all()
    want = admet.predict(MOLECULES, ["hERG", admet.SOLUBILITY])
    np.testing.assert_allclose(table["admet:hERG"], want["hERG"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(table[f"admet:{admet.SOLUBILITY}"], want[admet.SOLUBILITY], rtol=1e-5)


@pytest.mark.slow
def test_optimize_solubility_small_run(small_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "sol"
    args = ["optimize", "--model", str(small_model_dir), "--objective", "solubility", "--out", str(out)]
    fast = ["--budget", "8", "--batch", "4", "--n-init", "4", "--decode-attempts", "2", "--restarts", "2"]
    assert main([*args, *fast, "--raw-samples", "32", "--method", "bo", "--no-progress"]) == 0
    rows = pd.read_csv(out / "evaluations.csv")
    scored = rows[rows["status"] == "scored"]
    assert 0 < len(scored) <= 8
    np.testing.assert_allclose(scored["score"], chemistry.solubility(scored["smiles"].tolist()), rtol=1e-5)


def test_optimize_help_lists_solubility_and_the_endpoints_from_the_tables(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["optimize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert chemistry.PROPERTIES["solubility"].description in text
    lower = text[text.index("lower is better (negated):") :]
    assert "admet:<endpoint>" in text and "hERG" in lower[: lower.index("no direction")]


def test_evaluate_reports_the_solubility_distance_and_caches_the_reference(tmp_path, capsys) -> None:
    from scipy.stats import wasserstein_distance

    from molvae.datasets import default_cache_dir
    from molvae.metrics.solubility import reference_solubility, subsample
    from tests.conftest import moses_smiles

    ref, gen = moses_smiles(40, "test"), moses_smiles(30, "train")
    (tmp_path / "ref.smi").write_text("\n".join(ref) + "\n")
    (tmp_path / "gen.smi").write_text("\n".join(gen) + "\n")
    args = ["evaluate", "--samples", str(tmp_path / "gen.smi"), "--reference", str(tmp_path / "ref.smi")]
    assert main([*args, "--train", "none", "--solubility-sample", "20", "--out", str(tmp_path / "ev")]) == 0
    assert "Solubility_W=" in capsys.readouterr().out
    got = json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]["Solubility_W"]
    want = wasserstein_distance(chemistry.solubility(subsample(gen, 20)), chemistry.solubility(subsample(ref, 20)))
    assert got == pytest.approx(want, rel=1e-5)
    assert len(subsample(ref, 20)) == 20 and subsample(ref, 20) == subsample(ref, 20)  # seeded
    cached = list(default_cache_dir().glob("solubility-*.npy"))  # conftest points the cache into tmp
    assert any(np.array_equal(reference_solubility(ref, 20), np.load(f), equal_nan=True) for f in cached)
