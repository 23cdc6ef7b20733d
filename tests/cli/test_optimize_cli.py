"""`molvae optimize` end to end: resume after SIGKILL, reproducibility, constraints, Pareto fronts."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from molvae.chemistry import canonicalize, tanimoto_similarity
from molvae.cli.main import main
from molvae.model import MolVAE
from molvae.optimization import OptimizeConfig, Optimizer
from tests.optimize_runs import FAST, child_env, optimize, optimize_command, read_table, resume_in_child

pytestmark = pytest.mark.slow

# Lead optimization: ESOL among molecules at least 0.4 similar to celecoxib.
ESOL_NEAR_CELECOXIB = ["--objective", "esol", "--similar-to", "celecoxib", "--min-similarity", "0.4"]


def test_resume_after_sigkill_scores_nothing_twice(small_model_dir, tmp_path) -> None:
    log = tmp_path / "scored.log"
    (tmp_path / "logged_objective.py").write_text(
        "import os\n"
        f"LOG = {str(log)!r}\n"
        "def score(smiles):\n"
        "    with open(LOG, 'a') as fh:\n"
        "        fh.write(''.join(s + '\\n' for s in smiles))\n"
        "        fh.flush(); os.fsync(fh.fileno())\n"
        "    return [len(s) / 10.0 for s in smiles]\n"
    )
    env = child_env(tmp_path)
    out = tmp_path / "run"
    budget = 20
    cmd = optimize_command(
        small_model_dir, out, "--objective", "logged_objective:score", "--budget", str(budget), "--seed", "3", *FAST
    )
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            evals = out / "evaluations.csv"
            if evals.exists() and (read_table(evals)["status"] == "scored").sum() >= 8:
                break
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.2)
        else:
            pytest.fail("no round reached the disk in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = (read_table(out / "evaluations.csv")["status"] == "scored").sum()
    assert before < budget
    # resume: the objective comes from config.json
    resume_in_child(small_model_dir, out, env)
    df = read_table(out / "evaluations.csv")
    scored = df[df["status"] == "scored"]
    assert len(scored) == budget
    assert scored["call"].tolist() == list(range(1, budget + 1))
    assert scored["smiles"].is_unique
    logged = log.read_text().split()
    assert len(logged) == len(set(logged)) == budget  # the objective saw each molecule exactly once, across the kill
    assert set(logged) == set(scored["smiles"])


def test_same_seed_same_evaluations(small_model_dir, tmp_path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert optimize(small_model_dir, out, "--objective", "qed", "--budget", "10", "--seed", "7") == 0
        runs.append((out / "evaluations.csv").read_bytes())
    assert runs[0] == runs[1]
    assert (read_table(tmp_path / "a" / "evaluations.csv")["status"] == "scored").sum() == 10


def test_trust_region_options_reach_the_saved_state(small_model_dir, tmp_path) -> None:
    out = tmp_path / "turbo"
    fast = [a for a in FAST if a not in ("--method", "bo")]
    assert (
        optimize(
            small_model_dir,
            out,
            "--objective",
            "qed",
            "--budget",
            "8",
            "--method",
            "turbo",
            "--tr-failure-tolerance",
            "3",
            fast=fast,
        )
        == 0
    )
    config = json.loads((out / "config.json").read_text())
    state = json.loads((out / "state.json").read_text())
    assert config["method"] == "turbo" and config["optimize"]["tr_failure_tolerance"] == 3
    assert state["trust_region"]["failure_tolerance"] == 3


@pytest.mark.parametrize("extra", [[], ["--similarity-gp", "--no-local"]], ids=["plain", "similarity-gp"])
def test_similarity_constraint_holds_in_best(small_model_dir, tmp_path, extra, capsys) -> None:
    celecoxib = "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1"
    init = tmp_path / "init.csv"
    pd.DataFrame(
        {
            "smiles": [
                celecoxib,
                "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(C)(=O)=O)cc2)cc1",
                "CCO",
                "c1ccccc1O",
                "CC(=O)Nc1ccc(O)cc1",
            ]
        }
    ).to_csv(init, index=False)
    out = tmp_path / "lead"
    assert optimize(small_model_dir, out, *ESOL_NEAR_CELECOXIB, "--init", str(init), "--budget", "12", *extra) == 0
    saved = json.loads((out / "config.json").read_text())["optimize"]
    assert saved["similarity_gp"] is bool(extra)
    assert saved["local_after"] == (None if extra else 5)
    best = read_table(out / "best.csv")
    assert len(best) >= 1
    sims = tanimoto_similarity(canonicalize(celecoxib), best["smiles"].tolist())
    assert np.all(sims >= 0.4)
    np.testing.assert_allclose(best["similarity"], sims)
    evals = read_table(out / "evaluations.csv")
    # molecules below the similarity floor are recorded with the reason, and not scored: no call, no score
    infeasible = evals[evals["status"] == "infeasible"]
    assert len(infeasible) >= 3 and infeasible["reason"].str.contains("similarity").all()
    assert infeasible["call"].isna().all() and infeasible["score"].isna().all()
    scored = evals[evals["status"] == "scored"]
    assert scored["feasible"].all() and scored["call"].tolist() == list(range(1, len(scored) + 1))
    state = json.loads((out / "state.json").read_text())
    assert state["n_unscored"] == len(infeasible) and state["n_infeasible"] == len(infeasible)
    # the GP still learns where the constraint bites: the infeasible codes are in its data, at the worst score
    opt = Optimizer(
        MolVAE.load(small_model_dir),
        OptimizeConfig.from_dict(json.loads((out / "config.json").read_text())["optimize"]),
        out,
        resume=True,
    )
    X, Y = opt.training_data()
    known = evals[evals["status"].isin(["scored", "supplied", "infeasible"])]
    assert len(X) == len(known) == len(Y)
    feasible_scores = known.loc[known["feasible"], "score"]
    assert (Y[:, 0] == feasible_scores.min()).sum() >= len(infeasible)
    # the terminal summary counts the infeasible decodes and shows the best molecules with their similarity
    printed = capsys.readouterr().out.splitlines()
    assert f"{len(infeasible)} infeasible)" in printed[0]
    head = next(i for i, line in enumerate(printed) if line.startswith("best molecules ("))
    assert printed[head + 1].split() == ["smiles", "score", "similarity"]
    first = printed[head + 2].split()
    assert first[0] == best["smiles"].iloc[0] and float(first[2]) == pytest.approx(best["similarity"].iloc[0], abs=1e-3)


def test_score_infeasible_spends_calls_on_infeasible_molecules(small_model_dir, tmp_path) -> None:
    init = tmp_path / "init.csv"
    pd.DataFrame(
        {"smiles": ["Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1", "CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]}
    ).to_csv(init, index=False)
    out = tmp_path / "lead"
    assert (
        optimize(small_model_dir, out, *ESOL_NEAR_CELECOXIB, "--init", str(init), "--budget", "6", "--score-infeasible")
        == 0
    )
    evals = read_table(out / "evaluations.csv")
    assert "infeasible" not in set(evals["status"])
    init_rows = evals[evals["source"] == "init-file"]
    # the three dissimilar molecules were scored and charged, and are still marked infeasible
    assert init_rows["call"].tolist() == [1, 2, 3, 4] and init_rows["score"].notna().all()
    assert init_rows["feasible"].tolist() == [True, False, False, False]


def test_lead_optimization_starts_from_the_lead(small_model_dir, tmp_path) -> None:
    # a molecule the small model was trained on, so its neighbourhood decodes to relatives
    from molvae.data import moses_file, read_smiles

    lead = canonicalize(read_smiles(moses_file("train"), column="SMILES", limit=20)[7])
    out = tmp_path / "lead"
    i = FAST.index("--n-init")
    fast = FAST[:i] + FAST[i + 2 :]
    assert (
        optimize(
            small_model_dir,
            out,
            "--objective",
            "esol",
            "--similar-to",
            lead,
            "--min-similarity",
            "0.4",
            "--n-init",
            "8",
            "--budget",
            "12",
            fast=fast,
        )
        == 0
    )
    evals = read_table(out / "evaluations.csv")
    init = evals[(evals["round"] == 0) & evals["status"].isin(["scored", "infeasible"])]
    assert init["smiles"].iloc[0] == lead and init["similarity"].iloc[0] == pytest.approx(1.0)
    assert len(init) == 8
    # then molecules decoded around the lead's code: feasible ones first (a diverse subset), then the
    # most similar infeasible ones
    rest = init.iloc[1:]
    feasible = rest["feasible"].astype(bool).tolist()
    assert feasible == sorted(feasible, reverse=True)
    others = rest[~rest["feasible"].astype(bool)]
    assert others["similarity"].tolist() == sorted(others["similarity"], reverse=True)
    assert (init["source"] == "init").all()


def test_pareto_front_is_non_dominated(small_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "pareto"
    assert optimize(small_model_dir, out, "--objectives", "esol,qed", "--budget", "12") == 0
    front = read_table(out / "pareto.csv")
    assert len(front) >= 1
    Y = front[["score_esol", "score_qed"]].to_numpy()
    for i in range(len(Y)):
        for j in range(len(Y)):
            assert not (i != j and np.all(Y[j] >= Y[i]) and np.any(Y[j] > Y[i])), (front.iloc[i], front.iloc[j])
    # every feasible scored molecule not on the front is dominated by a front member
    evals = read_table(out / "evaluations.csv")
    rest = evals[(evals["status"] == "scored") & evals["feasible"] & ~evals["smiles"].isin(front["smiles"])]
    for y in rest[["score_esol", "score_qed"]].to_numpy():
        assert np.any(np.all(Y >= y, axis=1))
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"{out}: 12 oracle calls in ")
    head = next(i for i, line in enumerate(printed) if line.startswith("Pareto front ("))
    assert f"({len(front)} in pareto.csv" in printed[head]
    assert printed[head + 1].split() == ["smiles", "score_esol", "score_qed"]
    shown = printed[head + 2 :]
    assert len(shown) == min(5, len(front))
    assert [line.split()[0] for line in shown] == front["smiles"].head(5).tolist()


def test_bad_objective_is_one_line_error(tmp_path, capsys) -> None:
    assert main(["optimize", "--model", str(tmp_path), "--objective", "solubilty", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown objective 'solubilty'; did you mean solubility" in err and "esol" in err


def test_round_limit_stops_the_run_and_a_resume_can_raise_it(small_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "capped"
    args = ["optimize", "--model", str(small_model_dir), "--out", str(out), *FAST]
    assert main([*args, "--objective", "qed", "--budget", "100", "--max-rounds", "2"]) == 0
    assert "stopped at the round limit" in capsys.readouterr().out
    state = json.loads((out / "state.json").read_text())
    assert state["round"] == 2 and state["stop_reason"] == "max_rounds" and state["calls"] < 100
    first = read_table(out / "evaluations.csv")
    assert first["round"].max() == 2

    assert main([*args, "--resume", "--max-rounds", "3"]) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["round"] == 3 and json.loads((out / "config.json").read_text())["optimize"]["max_rounds"] == 3
    again = read_table(out / "evaluations.csv")
    pd.testing.assert_frame_equal(again.iloc[: len(first)], first)  # the first two rounds are kept as they were
    scored = again.loc[again["status"] == "scored", "smiles"]
    assert scored.is_unique and len(again) > len(first)


def test_resume_refuses_settings_that_differ_from_the_run(small_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    start = [
        "optimize",
        "--model",
        str(small_model_dir),
        "--out",
        str(out),
        "--objective",
        "esol",
        "--budget",
        "0",
        "--similar-to",
        "celecoxib",
        "--min-similarity",
        "0.4",
        "--batch",
        "4",
        "--seed",
        "3",
    ]
    assert main(start) == 0
    config = (out / "config.json").read_bytes()
    resume = ["optimize", "--model", str(small_model_dir), "--out", str(out), "--resume", "--no-progress"]
    for extra, needles in [
        (["--batch", "6"], ["--batch 6 (the run has 4)"]),
        (["--batch", "10"], ["--batch 10 (the run has 4)"]),  # a new run's default is no exception
        (["--seed", "4", "--method", "prior"], ["--seed 4 (the run has 3)", "--method 'prior' (the run has 'auto')"]),
        (["--similar-to", "aspirin"], ["--similar-to 'CC(=O)Oc1ccccc1C(=O)O'"]),
        (["--min-similarity", "0.5"], ["--min-similarity 0.5 (the run has 0.4)"]),
        (
            ["--no-local", "--score-infeasible"],
            ["--no-local (the run has 5)", "--score-infeasible (the run has False)"],
        ),
        (["--range", "mw=200:400"], ["--range {'mw': [200.0, 400.0]} (the run has None)"]),
    ]:
        assert main([*resume, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "only --budget and --max-rounds may change" in err, err
        for needle in needles:
            assert needle in err, (needle, err)
    assert (out / "config.json").read_bytes() == config  # nothing about the run changed
    # the same settings, spelled another way (the lead as SMILES), and the stopping rules are accepted
    same = [
        "--batch",
        "4",
        "--seed",
        "3",
        "--similar-to",
        "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1",
        "--min-similarity",
        "0.4",
        "--budget",
        "0",
        "--max-rounds",
        "1",
    ]
    assert main([*resume, *same]) == 0


def test_ctrl_c_says_how_to_continue_and_resume_finishes(small_model_dir, tmp_path, capsys) -> None:
    # Ctrl-C during the second scoring call (the first round, after the initial design)
    done = tmp_path / "interrupted-once"
    (tmp_path / "impatient.py").write_text(
        "import pathlib\n"
        "calls = []\n"
        "def score(smiles):\n"
        "    calls.append(len(smiles))\n"
        f"    if len(calls) == 2 and not pathlib.Path({str(done)!r}).exists():\n"
        f"        pathlib.Path({str(done)!r}).touch()\n"
        "        raise KeyboardInterrupt\n"
        "    return [len(s) / 10.0 for s in smiles]\n"
    )
    out = tmp_path / "run"
    args = [
        "optimize",
        "--model",
        str(small_model_dir),
        "--objective",
        f"{tmp_path / 'impatient.py'}:score",
        "--budget",
        "8",
        "--out",
        str(out),
        *FAST,
    ]
    assert main(args) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"molvae optimize: interrupted; the run so far is in {out}: add --resume to continue it"
    assert main([*args, "--resume"]) == 0
    scored = read_table(out / "evaluations.csv").query("status == 'scored'")
    assert len(scored) == 8 and scored["smiles"].is_unique
    # interrupted before the run folder exists: no resume hint
    (tmp_path / "early.py").write_text("raise KeyboardInterrupt\n")
    assert optimize(small_model_dir, tmp_path / "early", "--objective", f"{tmp_path / 'early.py'}:score") == 130
    assert capsys.readouterr().err.strip() == "molvae optimize: interrupted"


@pytest.mark.parametrize("suffix", [".csv", ".sdf"])
def test_init_file_scores_are_used_not_recomputed(small_model_dir, tmp_path, suffix) -> None:
    from rdkit import Chem

    mols = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    given = ["0.11", "", "0.33"]  # made-up scores: used as given; an empty one means "not known"
    init = tmp_path / f"init{suffix}"
    if suffix == ".csv":
        pd.DataFrame({"smiles": mols, "qed": given}).to_csv(init, index=False)
    else:
        with Chem.SDWriter(str(init)) as writer:  # an SD data field per objective, as docking tools write them
            for smi, score in zip(mols, given):
                mol = Chem.MolFromSmiles(smi)
                if score:
                    mol.SetProp("qed", score)
                writer.write(mol)
    out = tmp_path / "run"
    assert optimize(small_model_dir, out, "--objective", "qed", "--init", str(init), "--budget", "2") == 0
    evals = read_table(out / "evaluations.csv")
    init_rows = evals[evals["source"] == "init-file"]
    assert init_rows["smiles"].tolist() == [canonicalize(m) for m in mols]
    supplied = init_rows[init_rows["score"].notna()]
    assert supplied["score"].tolist() == [0.11, 0.33] and supplied["call"].isna().all()
    assert evals["call"].max() == 2  # the budget went to new molecules


def test_init_file_without_score_columns_is_scored(small_model_dir, tmp_path) -> None:
    init = tmp_path / "init.smi"
    init.write_text("CCO ethanol\nc1ccccc1O phenol\n")
    out = tmp_path / "run"
    assert optimize(small_model_dir, out, "--objective", "qed", "--init", str(init), "--budget", "3") == 0
    init_rows = read_table(out / "evaluations.csv").query("source == 'init-file'")
    assert init_rows["call"].tolist() == [1, 2] and init_rows["score"].notna().all()


def test_init_file_property_column_of_a_negated_objective_is_negated(small_model_dir, tmp_path, capsys) -> None:
    """`molvae properties` writes raw SA in its `sa` column; the objective sa is minus SA (higher = easier)."""
    from molvae.chemistry import sa_score

    mols = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    assert (
        main(["properties", "--input", str(_write(tmp_path / "in.smi", mols)), "--out", str(tmp_path / "p.csv")]) == 0
    )
    props = pd.read_csv(tmp_path / "p.csv")[["smiles", "sa"]]
    props.to_csv(tmp_path / "init.csv", index=False)
    out = tmp_path / "run"
    assert (
        optimize(small_model_dir, out, "--objective", "sa", "--init", str(tmp_path / "init.csv"), "--budget", "0") == 0
    )
    supplied = read_table(out / "evaluations.csv").query("status == 'supplied'")
    np.testing.assert_allclose(supplied["score"], -sa_score(supplied["smiles"].tolist()))
    best = read_table(out / "best.csv")
    assert best["smiles"].iloc[0] == min(supplied["smiles"], key=lambda s: sa_score([s])[0])
    capsys.readouterr()


def _write(path: Path, smiles: list[str]) -> Path:
    path.write_text("\n".join(smiles) + "\n")
    return path


def test_resume_checks_every_objective_and_a_nan_objective_is_counted(small_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "multi"
    base = ["optimize", "--model", str(small_model_dir), "--out", str(out), *FAST]
    assert main([*base, "--objectives", "qed,sa", "--budget", "0"]) == 0
    capsys.readouterr()
    assert main([*base, "--objectives", "qed,logp", "--resume"]) == 2
    assert "optimizes qed, sa, not qed,logp; drop --objectives" in capsys.readouterr().err
    assert main([*base, "--objectives", "qed,sa", "--resume", "--budget", "0"]) == 0
    # an objective that returns NaN for every molecule: each is marked infeasible, and the summary says so
    (tmp_path / "nan.py").write_text("def score(smiles):\n    return [float('nan')] * len(smiles)\n")
    assert (
        optimize(
            small_model_dir,
            tmp_path / "nan",
            "--objective",
            f"{tmp_path / 'nan.py'}:score",
            "--budget",
            "6",
            fast=[*FAST, "--method", "prior"],
        )
        == 0
    )
    printed = capsys.readouterr().out
    evals = read_table(tmp_path / "nan" / "evaluations.csv").query("status == 'scored'")
    assert len(evals) == 6 and (evals["reason"] == "objective returned NaN").all()
    assert "6 infeasible" in printed and "no feasible molecule was scored" in printed


def test_resume_refuses_another_model_but_takes_a_copy_of_the_same(small_model_dir, tmp_path, capsys) -> None:
    import shutil

    import torch

    other = MolVAE.load(small_model_dir, device="cpu")
    with torch.no_grad():
        next(other.net.parameters()).add_(0.01)
    other.save(tmp_path / "other")
    shutil.copytree(small_model_dir, tmp_path / "copy")
    out = tmp_path / "run"
    args = ["optimize", "--objective", "qed", "--budget", "0", "--out", str(out), *FAST]
    assert main([*args, "--model", str(small_model_dir)]) == 0
    assert main([*args, "--model", str(tmp_path / "other"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"was started with the model in {small_model_dir}" in err and "resume it with that model" in err
    assert main([*args, "--model", str(tmp_path / "copy"), "--resume"]) == 0
