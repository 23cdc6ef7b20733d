"""What the `molvae optimize` tests share: quick settings, the command run in this process or in a child
(where a scoring module in the test's folder is importable), and its tables read back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from molvae.cli.main import main

REPO = Path(__file__).resolve().parents[2]
# Small enough for a round in seconds on a small model; plain BO, so every round fits a GP.
FAST = [
    "--batch",
    "4",
    "--n-init",
    "4",
    "--decode-attempts",
    "2",
    "--restarts",
    "2",
    "--raw-samples",
    "32",
    "--acq-maxiter",
    "25",
    "--method",
    "bo",
    "--no-progress",
]


def read_table(path: Path) -> pd.DataFrame:
    """A CSV the run wrote, with empty cells as NaN and nothing else read as missing (as a resume reads it)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def optimize(model_dir: Path, out: Path, *args: str, fast: Sequence[str] = FAST) -> int:
    """``molvae optimize --model model_dir --out out *args *fast`` in this process; its exit code."""
    return main(["optimize", "--model", str(model_dir), "--out", str(out), *args, *fast])


def child_env(folder: Path) -> dict[str, str]:
    """The environment of a child process that imports scoring modules from ``folder`` and molvae from here."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO)])}


def optimize_command(model_dir: Path, out: Path, *args: str) -> list[str]:
    """The command line of ``molvae optimize`` run as a child process."""
    return [sys.executable, "-m", "molvae.cli.main", "optimize", "--model", str(model_dir), "--out", str(out), *args]


def resume_in_child(model_dir: Path, out: Path, env: dict[str, str]) -> None:
    """``molvae optimize --resume`` of the run in ``out`` in a child process, which must succeed (the objective
    comes from config.json)."""
    done = subprocess.run(
        optimize_command(model_dir, out, "--resume", "--no-progress"),
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr
