"""Killed twice at random moments: `molvae train` and `molvae optimize` resume to the uninterrupted result.

Each test runs the command uninterrupted (the reference), then starts it again and
SIGKILLs it at a seeded random moment: once it has reached a randomly drawn point
of progress (a training step, an optimization round), after a further random
delay, so the kill can land anywhere, checkpoint writes included. The test checks
that every file on disk reads back whole, resumes, kills the resumed process the
same way, resumes again to the end and compares with the reference. Progress
points rather than bare wall-clock delays keep the kills inside the run however
busy the machine is.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from molvae.checkpoint import load_state, load_weights, read_json
from molvae.chemistry import canonicalize
from molvae.cli.main import main
from molvae.errors import MolvaeError
from molvae.model import MolVAE
from tests.conftest import moses_smiles
from tests.optimize_runs import FAST, read_table

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "--embedding-dim",
    "16",
    "--encoder-hidden",
    "32",
    "--latent-dim",
    "16",
    "--decoder-hidden",
    "64",
    "--decoder-layers",
    "2",
]


class Run:
    """A ``molvae`` subprocess whose output is collected by a thread (so a full pipe never blocks it)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "molvae.cli.main", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 300) -> None:
        """Block until ``predicate()``; fails if the process ends first."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None, f"process ended before the kill point:\n{self.output}"
            assert time.monotonic() < deadline, f"timed out waiting for the kill point:\n{self.output}"
            time.sleep(0.01)

    def kill_when(self, predicate: Callable[[], bool], delay: float) -> None:
        """SIGKILL the process ``delay`` seconds after ``predicate()`` first holds."""
        self.wait_for(predicate)
        time.sleep(delay)
        # The point of the test is a kill in the middle of the work: a run that already
        # finished would prove nothing, so that is a failure, not a pass.
        assert self.proc.poll() is None, f"process finished before the kill:\n{self.output}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.reader.join()

    def finish(self, timeout: float = 600) -> str:
        self.proc.wait(timeout=timeout)
        self.reader.join()
        assert self.proc.returncode == 0, self.output
        return self.output


def _json_or_none(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- training
def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--seed",
        "11",
        "--val-recon-n",
        "10",
        "--val-sample-n",
        "10",
        "--no-progress",
        "--precision",
        "fp32",
        *TINY,
        *extra,
    ]


def _assert_training_files_complete(out: Path) -> None:
    """Every file a killed run left behind reads back whole and the files agree with each other."""
    if not (out / "config.json").exists():
        return
    config = read_json(out / "config.json")
    assert set(config) == {"model", "training"}
    read_json(out / "vocab.json")
    epoch = None
    if (out / "resume.pt").exists():
        state = load_state(out / "resume.pt")  # raises on a torn file
        epoch = state["state"]["epoch"]
        assert len(state["state"]["history"]) == epoch
    if (out / "model.safetensors").exists():
        MolVAE.load(out, device="cpu")  # weights, config and vocabulary consistent
    if (out / "metrics.csv").exists():
        with open(out / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
        if epoch is not None:
            # Weights and metrics are written before resume.pt at an epoch end, so they may be one epoch ahead.
            assert len(rows) in (epoch, epoch + 1)


def _global_step(out: Path) -> int:
    try:
        return load_state(out / "resume.pt")["state"]["global_step"]
    except MolvaeError:  # not written yet (the file is replaced atomically, never torn)
        return -1


def test_train_killed_twice_resumes_to_identical_weights(tmp_path) -> None:
    rng = random.Random(20240611)
    data = tmp_path / "mols.smi"
    data.write_text("\n".join(moses_smiles(512)) + "\n")  # 486 for training: 16 steps of 32 per epoch, 32 in all
    ref = tmp_path / "reference"
    assert main(_train_args(data, ref, "--checkpoint-minutes", "1000")) == 0  # in-process: one start-up less

    out = tmp_path / "run"
    # A checkpoint after (almost) every step: kills land before, during or after checkpoint writes.
    run = Run(_train_args(data, out, "--checkpoint-minutes", "0.0001"))
    first = rng.randint(2, 16)  # 16: the kill lands in the epoch-end validation and saving
    run.kill_when(lambda: _global_step(out) >= first, rng.uniform(0.0, 0.1))
    _assert_training_files_complete(out)
    print(f"first kill after step {first}: checkpoint at step {_global_step(out)}")

    run = Run(["train", "--out", str(out), "--resume", "--no-progress"])
    second = rng.randint(18, 26)
    run.kill_when(lambda: _global_step(out) >= second, rng.uniform(0.0, 0.1))
    _assert_training_files_complete(out)
    print(f"second kill after step {second}: checkpoint at step {_global_step(out)}")

    final = Run(["train", "--out", str(out), "--resume", "--no-progress", "--checkpoint-minutes", "1000"]).finish()
    assert "resumed from" in final
    _assert_training_files_complete(out)
    wa, wb = load_weights(out / "model.safetensors"), load_weights(ref / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert load_state(out / "resume.pt")["state"]["epoch"] == 2
    assert (out / "metrics.csv").read_text().count("\n") == 3  # header + 2 epochs
    assert not list(out.glob(".*.tmp"))


# --------------------------------------------------------------------------- optimization
BUDGET = 12


def _assert_optimization_files_complete(out: Path) -> None:
    """After a kill: config/state are whole JSON, the table parses, the journal has at most a torn last line."""
    if (out / "config.json").exists():
        read_json(out / "config.json")
    if (out / "state.json").exists():
        state = read_json(out / "state.json")
        evals = read_table(out / "evaluations.csv")
        # state.json is the commit point: written after the rows it counts.
        assert len(evals) >= state["n_records"]
    if (out / "scores.jsonl").exists():
        lines = (out / "scores.jsonl").read_text().split("\n")
        for line in lines[:-1]:
            json.loads(line)


def _progress(out: Path) -> str:
    """Where a kill landed (shown with pytest -s): committed rows, rows on disk, scores journaled."""
    state = _json_or_none(out / "state.json") or {}
    rows = len(read_table(out / "evaluations.csv")) if (out / "evaluations.csv").exists() else 0
    journal = (out / "scores.jsonl").read_text().count("\n") if (out / "scores.jsonl").exists() else 0
    return (
        f"round {state.get('round')} committed with {state.get('n_records')} rows; {rows} rows on disk; "
        f"{journal} scores journaled"
    )


def test_optimize_killed_twice_scores_nothing_twice_and_matches_uninterrupted(
    small_model_dir, tmp_path, monkeypatch
) -> None:
    rng = random.Random(7)
    (tmp_path / "logged_objective.py").write_text(
        "import os\n"
        "def score(smiles):\n"
        "    with open(os.environ['SCORE_LOG'], 'a') as fh:\n"
        "        fh.write(''.join(s + '\\n' for s in smiles))\n"
        "        fh.flush(); os.fsync(fh.fileno())\n"
        "    return [len(s) / 10.0 + s.count('N') for s in smiles]\n"
    )

    def env(log: Path) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]), "SCORE_LOG": str(log)}

    def args(out: Path) -> list[str]:
        return [
            "optimize",
            "--model",
            str(small_model_dir),
            "--objective",
            "logged_objective:score",
            "--budget",
            str(BUDGET),
            "--out",
            str(out),
            "--seed",
            "5",
            *FAST,
        ]

    ref = tmp_path / "reference"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SCORE_LOG", str(tmp_path / "ref.log"))
    assert main(args(ref)) == 0  # in-process: one start-up less
    # Kill delays are drawn in units of the reference's median round, so they scale with the machine.
    round_s = float(pd.Series([t["total"] for t in read_json(ref / "state.json")["timings"]]).median())

    out = tmp_path / "run"
    log = tmp_path / "run.log"

    def committed_round() -> int:
        state = _json_or_none(out / "state.json")
        return -1 if state is None else state["round"]

    # Round 0 is the initial design (4 calls); the 8 calls left take at least 2 rounds of 4 (with
    # seed 5, 5 rounds: decodes repeat), so both kill points (a random moment within a round after a
    # commit) lie inside the run; kill_when fails the test if one does not.
    run = Run(args(out), env(log))
    run.kill_when(lambda: committed_round() >= 0, rng.uniform(0.0, 1.0) * round_s)
    _assert_optimization_files_complete(out)
    print("first kill:", _progress(out))

    resume = ["optimize", "--model", str(small_model_dir), "--out", str(out), "--resume", "--no-progress"]
    second = committed_round() + 1
    run = Run(resume, env(log))
    run.kill_when(lambda: committed_round() >= second, rng.uniform(0.0, 1.0) * round_s)
    _assert_optimization_files_complete(out)
    print("second kill:", _progress(out))

    Run(resume, env(log)).finish()
    df = read_table(out / "evaluations.csv")
    scored = df[df["status"] == "scored"]
    assert len(scored) == BUDGET
    assert scored["call"].tolist() == list(range(1, BUDGET + 1))
    assert scored["smiles"].map(canonicalize).is_unique
    logged = log.read_text().split()
    assert sorted(logged) == sorted(scored["smiles"])  # the objective saw each molecule once, across both kills
    # The same trace, row for row and byte for byte, as the run nobody killed.
    assert (out / "evaluations.csv").read_bytes() == (ref / "evaluations.csv").read_bytes()


def test_round_cut_short_after_scoring_is_redone_from_the_journal(small_model, tmp_path) -> None:
    """The exact window a random kill rarely hits: scores paid for, rows written, state.json not yet."""
    from molvae.optimization import OptimizeConfig, Optimizer, parse_objective

    seen: list[str] = []

    def score(smiles: list[str]) -> list[float]:
        seen.extend(smiles)
        return [len(s) / 10.0 + s.count("N") for s in smiles]

    objectives = [parse_objective(score, name="length")]
    # Prior sampling: the same bookkeeping as BO without GP fits (the test above covers the GP's determinism).
    cfg = OptimizeConfig(objectives=["length"], budget=12, batch=4, n_init=4, decode_attempts=2, method="prior", seed=5)
    out = tmp_path / "run"
    opt = Optimizer(small_model, cfg, out, objectives=objectives)
    opt.initial_design()
    opt.step()
    committed = (out / "state.json").read_bytes()
    calls_then = opt.oracle.calls
    opt.run()
    finished = (out / "evaluations.csv").read_bytes()
    n_scored = len(seen)
    assert n_scored == 12 and len(set(seen)) == 12

    # As if killed after the later rounds scored their molecules and wrote evaluations.csv but
    # before any of their state.json writes, with the last journal append torn in half.
    (out / "state.json").write_bytes(committed)
    with open(out / "scores.jsonl", "a") as fh:
        fh.write('{"smiles": "CC(=O)N')
    again = Optimizer(small_model, cfg, out, objectives=objectives, resume=True)
    assert (again.round, again.oracle.calls) == (1, calls_then)  # uncommitted rows dropped
    assert (out / "scores.jsonl").read_text().endswith("}\n")  # torn line cut off
    again.run()
    assert len(seen) == n_scored  # every score of the redone rounds came from the journal
    assert (out / "evaluations.csv").read_bytes() == finished
