"""`molvae optimize` reads what the user gave as it was meant: --init score columns, --range, objectives that end
the process, runs killed mid-call or during start-up, values that belong to the command line."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from molvae.chemistry import qed
from molvae.cli.main import main
from tests.optimize_runs import FAST, child_env, optimize, optimize_command, read_table, resume_in_child

MOLECULES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1"]


def _last_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


@pytest.fixture(scope="module")
def esol_run(small_model_dir, tmp_path_factory) -> Path:
    """A finished ESOL run whose best.csv has `score` (ESOL logS) beside the property columns (qed, esol...)."""
    out = tmp_path_factory.mktemp("esol") / "run"
    assert optimize(small_model_dir, out, "--objective", "esol", "--budget", "6") == 0
    return out


def test_an_init_file_from_another_objective_gives_its_named_column_not_its_score(
    esol_run, small_model_dir, tmp_path, caplog
) -> None:
    """best.csv of an ESOL run as --init of a QED run: the qed column holds QED; score holds ESOL."""
    out = tmp_path / "qed"
    with caplog.at_level("INFO"):
        assert (
            optimize(small_model_dir, out, "--objective", "qed", "--init", str(esol_run / "best.csv"), "--budget", "0")
            == 0
        )
    assert "scores from column 'qed'" in caplog.text
    supplied = read_table(out / "evaluations.csv").query("status == 'supplied'")
    assert len(supplied) > 0
    pd.testing.assert_series_equal(supplied["score"], supplied["qed"], check_names=False)
    assert list(supplied["score"]) == pytest.approx(list(qed(supplied["smiles"].tolist())))


def test_a_bare_score_column_of_another_objective_is_refused(esol_run, small_model_dir, tmp_path, capsys) -> None:
    """Without a column named as the objective, the run's own config.json says whose the score column is."""
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "config.json").write_bytes((esol_run / "config.json").read_bytes())
    read_table(esol_run / "best.csv")[["smiles", "score"]].to_csv(folder / "best.csv", index=False)
    assert (
        optimize(
            small_model_dir,
            tmp_path / "tpsa",
            "--objective",
            "tpsa",
            "--init",
            str(folder / "best.csv"),
            "--budget",
            "0",
        )
        == 2
    )
    assert "its score column holds esol (the run's config.json says so), not tpsa" in _last_error(capsys)
    # the same objective: used as given
    assert (
        optimize(
            small_model_dir,
            tmp_path / "esol",
            "--objective",
            "esol",
            "--init",
            str(folder / "best.csv"),
            "--budget",
            "0",
        )
        == 0
    )
    supplied = read_table(tmp_path / "esol" / "evaluations.csv").query("status == 'supplied'")
    assert list(supplied["score"]) == list(read_table(folder / "best.csv")["score"])


def test_a_blank_init_score_is_not_blamed_on_the_objective(small_model_dir, tmp_path) -> None:
    pd.DataFrame({"smiles": MOLECULES[:2], "qed": ["0.5", ""]}).to_csv(tmp_path / "init.csv", index=False)
    out = tmp_path / "run"
    assert (
        optimize(small_model_dir, out, "--objective", "qed", "--init", str(tmp_path / "init.csv"), "--budget", "0") == 0
    )
    reasons = read_table(out / "evaluations.csv").query("status == 'supplied'")["reason"].fillna("").tolist()
    assert reasons == ["", "no score given in the --init file"]


def test_the_output_of_molvae_properties_is_an_init_file(small_model_dir, tmp_path) -> None:
    """`molvae properties` writes smiles and canonical_smiles: the smiles column is taken, without options."""
    (tmp_path / "in.smi").write_text("\n".join(MOLECULES) + "\n")
    assert main(["properties", "--input", str(tmp_path / "in.smi"), "--out", str(tmp_path / "props.csv")]) == 0
    out = tmp_path / "run"
    assert (
        optimize(small_model_dir, out, "--objective", "qed", "--init", str(tmp_path / "props.csv"), "--budget", "0")
        == 0
    )
    assert (read_table(out / "evaluations.csv")["status"] == "supplied").sum() == len(MOLECULES)
    # and --smiles-column picks another one
    pd.DataFrame({"id": ["a", "b"], "structure": MOLECULES[:2]}).to_csv(tmp_path / "named.csv", index=False)
    assert (
        optimize(
            small_model_dir,
            tmp_path / "named",
            "--objective",
            "qed",
            "--init",
            str(tmp_path / "named.csv"),
            "--smiles-column",
            "structure",
            "--budget",
            "2",
        )
        == 0
    )
    assert read_table(tmp_path / "named" / "evaluations.csv")["source"].eq("init-file").sum() == 2


def test_a_property_range_given_twice_is_refused(small_model_dir, tmp_path, capsys) -> None:
    """The last --range used to win silently (mw 278 accepted under --range mw=300:350 --range mw=200:450)."""
    assert (
        optimize(
            small_model_dir,
            tmp_path / "run",
            "--objective",
            "qed",
            "--range",
            "mw=300:350",
            "--range",
            "mw=200:450",
            "--budget",
            "4",
        )
        == 2
    )
    assert "--range mw given twice (300:350 and 200:450); give one range per property" in _last_error(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bounds", ["nan:450", "200:nan", "200:inf"])
def test_a_range_bound_must_be_a_finite_number(tmp_path, capsys, bounds) -> None:
    """`--range mw=nan:450` made every molecule infeasible and ran 20 empty rounds, exit 0."""
    with pytest.raises(SystemExit) as exit_:
        main(["optimize", "--objective", "qed", "--range", f"mw={bounds}", "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2
    assert "the bounds must be finite numbers" in _last_error(capsys)


def test_a_bad_value_on_the_command_line_is_not_blamed_on_the_run_file(esol_run, capsys) -> None:
    assert main(["optimize", "--out", str(esol_run), "--resume", "--budget", "-5"]) == 2
    err = _last_error(capsys)
    assert err.startswith("molvae optimize: error: --budget -5: ") and "config.json" not in err


def test_an_objective_that_calls_sys_exit_fails_the_run_resumably(small_model_dir, tmp_path, capsys) -> None:
    for code, shown in (("0", "sys.exit(0)"), ("'bye'", "sys.exit('bye')")):
        objective = tmp_path / "quits.py"
        objective.write_text(f"import sys\ndef score(smiles):\n    sys.exit({code})\n")
        out = tmp_path / f"run{len(shown)}"
        assert optimize(small_model_dir, out, "--objective", f"{objective}:score", "--budget", "4") == 2
        err = _last_error(capsys)
        assert f"called {shown} while scoring" in err
        assert f"the run so far is in {out}: fix the cause and add --resume to continue it" in err


def test_resume_of_a_run_that_never_started_says_how_to_start_it(tmp_path, capsys) -> None:
    (tmp_path / "run").mkdir()  # killed during start-up: the folder, no config.json
    assert main(["optimize", "--objective", "qed", "--out", str(tmp_path / "run"), "--resume"]) == 2
    assert "it was stopped before its first save; the same command without --resume starts it" in _last_error(capsys)


def test_an_objective_declaring_batch_size_one_loses_nothing_to_a_kill_mid_round(small_model_dir, tmp_path) -> None:
    """SIGKILL while a slow objective scores a round: with ``score.batch_size = 1`` each molecule's score is
    journaled as it returns, so the resumed run scores again only the molecule in flight, not the whole batch."""
    log = tmp_path / "scored.log"
    (tmp_path / "slow_objective.py").write_text(
        "import os, time\n"
        f"LOG = {str(log)!r}\n"
        "def score(smiles):\n"
        "    assert len(smiles) == 1\n"
        "    with open(LOG, 'a') as fh:\n"
        "        fh.write(smiles[0] + '\\n'); fh.flush(); os.fsync(fh.fileno())\n"
        "    time.sleep(0.3)\n"
        "    return [len(smiles[0]) / 10.0]\n"
        "score.batch_size = 1\n"
    )
    env = child_env(tmp_path)
    out = tmp_path / "run"
    cmd = optimize_command(
        small_model_dir, out, "--objective", "slow_objective:score", "--budget", "8", "--seed", "3", *FAST
    )
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while not (log.exists() and len(log.read_text().split()) >= 2):  # two of the first four scored
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_after = log.read_text().split()
    assert len(killed_after) < 4, "the kill came after the round ended: nothing was in flight"
    resume_in_child(small_model_dir, out, env)
    logged = log.read_text().split()
    assert len(set(logged)) == 8
    # Only the call in flight when the kill came is made again: the molecules scored before it are not.
    repeats = sorted(s for s in set(logged) if logged.count(s) > 1)
    assert repeats in ([], [killed_after[-1]]), (repeats, killed_after)
    journal = [json.loads(line)["smiles"] for line in (out / "scores.jsonl").read_text().splitlines()]
    assert sorted(journal) == sorted(set(logged))
