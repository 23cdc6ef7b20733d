"""scripts/bench_lead.py: the lead rule, the bar's verdict, and one real cell end to end."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from molvae import chemistry
from molvae.drugs import load_drug_table, lookup_drug

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "bench_lead.py"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "scripts"))  # it imports bench_bo beside it, as when run as a script
    spec = importlib.util.spec_from_file_location("bench_lead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rule_takes_the_first_poorly_soluble_drug_sized_drugs_by_name(bench):
    names = bench.rule_leads(5)
    assert names == sorted(names) and len(set(names)) == 5
    table = load_drug_table()
    smiles = table["smiles"].tolist()
    meets = (
        (chemistry.esol_logs(smiles) < -4)
        & (chemistry.molecular_weight(smiles) >= 250)
        & (chemistry.molecular_weight(smiles) <= 450)
    )
    assert set(names) <= set(table["name"][meets])
    # none skipped: every drug that meets the rule and sorts before the last one taken is taken
    assert sorted(n for n in table["name"][meets] if n <= names[-1]) == names
    with pytest.raises(SystemExit, match="only"):
        bench.rule_leads(10_000)
    with pytest.raises(SystemExit):  # not a silent fall-back to the default lead
        bench.main(["--rule", "0"])


def test_a_cell_meets_the_bar_only_with_enough_gain_and_every_reported_molecule_similar(bench):
    cells = [
        {"gain": 1.2, "min_similarity_reported": 0.41},  # met
        {"gain": 1.5, "min_similarity_reported": 0.39},  # a reported molecule below the floor
        {"gain": 0.99, "min_similarity_reported": 0.5},  # not enough gain
        {"gain": None, "min_similarity_reported": None},
    ]  # nothing feasible
    summary = bench.summarize(cells, bar=1.0, floor=0.4)
    assert summary["met"] == 1 and summary["cells"] == 4
    assert summary["all_reported_feasible"] is False
    assert summary["mean_gain"] == pytest.approx((1.2 + 1.5 + 0.99) / 3, abs=1e-3)
    assert summary["min_gain"] == pytest.approx(0.99)


def test_cell_folders_are_one_path_component_and_distinct(bench, capsys):
    assert bench.cell_name("celecoxib", 3) == "celecoxib-3"
    name = bench.cell_name("C/C=C/c1ccc(O)cc1", 0)  # a SMILES lead: stereo bonds hold a slash
    assert "/" not in name and "\\" not in name and name.endswith("-0")
    # two leads that would share a folder stop the benchmark before any cell runs
    with pytest.raises(SystemExit):
        bench.main(["--leads", "C/C=C/C,C\\C=C\\C", "--budget", "1"])
    assert "share a --keep folder" in capsys.readouterr().err


@pytest.mark.slow
def test_one_lead_cell_end_to_end(tmp_path):
    keep = tmp_path / "cells"
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--leads",
        "celecoxib",
        "--budget",
        "25",
        "--max-rounds",
        "2",
        "--keep",
        str(keep),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    cell = figures["cells"][0]
    evals = pd.read_csv(keep / "celecoxib-0" / "evaluations.csv")
    best = pd.read_csv(keep / "celecoxib-0" / "best.csv")  # what the run reports to its user
    lead = float(chemistry.esol_logs([lookup_drug("celecoxib")])[0])
    assert cell["lead_score"] == pytest.approx(lead, abs=1e-3)
    assert cell["best"] == pytest.approx(best["score"].max(), abs=1e-3) and cell["best_smiles"] == best["smiles"][0]
    assert cell["gain"] == pytest.approx(cell["best"] - lead, abs=2e-3)
    assert cell["min_similarity_reported"] == pytest.approx(best["similarity"].min(), abs=1e-3)
    assert best["similarity"].min() >= 0.4
    assert cell["reported"] == len(best)
    assert cell["rounds"] <= 2 and cell["calls"] == (evals["status"] == "scored").sum() <= 25
    assert figures["summary"]["met"] == int(cell["gain"] >= 1.0)
    # A kept folder is not resumed under possibly other settings, and a bad lead stops before any cell.
    for argv, message in (
        (cmd, "already holds celecoxib-0"),
        (cmd[:3] + ["celecoxib,not-a-drug"] + cmd[4:-1] + [str(tmp_path / "new")], "not-a-drug"),
        (cmd[:-1] + [str(tmp_path / "new"), "--seeds", "0,one"], "'0,one'"),
    ):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "new").exists()
