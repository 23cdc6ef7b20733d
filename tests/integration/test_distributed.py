"""Data-parallel training with torch.distributed (gloo, 2 CPU processes via torchrun)."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from molvae.checkpoint import load_state, load_weights, read_json
from tests.conftest import moses_smiles

pytestmark = pytest.mark.slow

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


# Runs the CLI, then fails if gloo's threads survived destroy_process_group: a group left to
# interpreter exit can abort a finished run (SIGABRT) at random.
CHECK_THREADS = """
import os, sys, time
from molvae.cli.main import main
code = main(sys.argv[1:])

def gloo_threads():
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            names.append(open(f"/proc/self/task/{tid}/comm").read().strip())
        except OSError:
            pass
    return sorted(n for n in names if "gloo" in n)

# gloo's loop thread can take a moment to exit after destroy_process_group on a loaded
# machine (seen once with a benchmark running beside the suite); a group never destroyed keeps it for good
deadline = time.monotonic() + 5.0
left = gloo_threads()
while left and time.monotonic() < deadline:
    time.sleep(0.05)
    left = gloo_threads()
if left:
    print(f"rank {os.environ['RANK']}: gloo threads still running after the run: {left}", file=sys.stderr)
    sys.exit(3)
sys.exit(code)
"""


def _torchrun(*args: str, script: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    target = [script] if script is not None else ["-m", "molvae.cli.main"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *target, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def test_two_process_training_and_resume(tmp_path) -> None:
    data = tmp_path / "mols.smi"
    data.write_text("\n".join(moses_smiles(800)) + "\n")
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--batch-size",
        "32",
        "--seed",
        "3",
        "--no-progress",
        "--val-recon-n",
        "10",
        "--val-sample-n",
        "10",
        *TINY,
    ]
    check = None
    if os.path.isdir("/proc/self/task"):  # Linux: thread names are readable
        check = tmp_path / "check_threads.py"
        check.write_text(CHECK_THREADS)
    first = _torchrun(*args, "--epochs", "1", script=None if check is None else str(check))
    assert first.returncode == 0, first.stdout + first.stderr
    # Logs come from rank 0 only.
    assert first.stdout.count("read 800 records") == 1
    state = load_state(out / "resume.pt")["state"]
    batches = len(range(0, 760, 32))  # 760 training molecules after the 5% validation split
    assert state["global_step"] == batches // 2  # each rank took half of the epoch's batches
    assert read_json(out / "run_info.json")["world_size"] == 2
    weights_after_1 = load_weights(out / "model.safetensors")

    second = _torchrun("train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resumed from" in second.stdout
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2]
    assert metrics["train_loss"].iloc[1] < metrics["train_loss"].iloc[0]
    weights_after_2 = load_weights(out / "model.safetensors")
    assert any(not torch.equal(weights_after_1[k], weights_after_2[k]) for k in weights_after_1)
