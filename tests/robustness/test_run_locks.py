"""A second process pointed at a run directory in use is refused before it writes anything."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from molvae.checkpoint import LOCK_FILE
from molvae.cli.main import main
from tests.optimize_runs import FAST

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX record locks")


def _snapshot(directory) -> dict[str, bytes]:
    # The lock file holds the holder's pid, which is the point of the test to change.
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and p.name != LOCK_FILE}


def _refused(capsys, code: int, pid: int) -> None:
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert f"in use by another molvae process (pid {pid})" in err


@pytest.mark.slow
def test_optimize_resume_while_the_run_is_in_use(small_model_dir, tmp_path, capsys, lock_holder) -> None:
    out = tmp_path / "run"
    args = [
        "optimize",
        "--model",
        str(small_model_dir),
        "--out",
        str(out),
        *FAST,
        "--method",  # given after FAST's, so it wins: no GP fits, the run is about the lock
        "prior",
    ]
    assert main([*args, "--objective", "qed", "--budget", "8"]) == 0
    capsys.readouterr()
    before = _snapshot(out)

    holder = lock_holder(out)  # as if the first run were still going in another terminal
    _refused(capsys, main([*args, "--resume", "--budget", "12"]), holder.pid)
    assert _snapshot(out) == before

    holder.kill()
    holder.wait()
    assert main([*args, "--resume", "--budget", "12"]) == 0
    assert json.loads((out / "state.json").read_text())["calls"] == 12


@pytest.mark.slow
def test_train_resume_while_the_run_is_in_use(small_model_dir, tmp_path, capsys, lock_holder) -> None:
    lock_holder(small_model_dir)  # the fixture's finished Trainer.fit left its directory free
    run = tmp_path / "run"
    shutil.copytree(small_model_dir, run)
    before = _snapshot(run)
    holder = lock_holder(run)
    _refused(capsys, main(["train", "--out", str(run), "--resume", "--epochs", "5"]), holder.pid)
    assert _snapshot(run) == before
