"""The prepared GPU session (scripts/prepare_gpu_session.py, scripts/gpu_session.py), rehearsed on the CPU.

The rehearsal runs every step of the device call (tests, benchmarks, training, export) with
RDKit and molsets unimportable, as on the GPU machine, and what it leaves in OUT must meet
the device's rules for files brought back.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from molvae.model import MolVAE

REPO = Path(__file__).resolve().parents[2]
MAX_FILES, MAX_FILE_BYTES = 8, 16 * 2**20


def _prepare(dest: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "scripts/prepare_gpu_session.py", "--dest", str(dest), *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_device_call_fits_the_tool(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "scripts"))  # it imports gpu_session beside it, as when run as a script
    spec = importlib.util.spec_from_file_location("prepare_gpu_session", REPO / "scripts" / "prepare_gpu_session.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    call = module.device_call(REPO / ".gpu")
    assert len(call["command"]) <= 2000 and call["carry"] == [".gpu"] and call["timeout_s"] <= 600
    assert "scripts/gpu_session.py --gpu-dir .gpu" in call["command"] and "--target /tmp/site" in call["command"]


@pytest.mark.slow
def test_rehearsal_runs_every_step_without_rdkit_and_brings_back_what_the_device_allows(tmp_path) -> None:
    gpu, out = tmp_path / "gpu", tmp_path / "out"
    prepared = _prepare(gpu, "--start", "zinc-smiles", "--limit", "300")
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    assert (gpu / "data" / "train.npz").is_file() and list((gpu / "wheels").glob("selfies-*.whl"))
    cmd = [sys.executable, "scripts/gpu_session.py", "--rehearsal", "--gpu-dir", str(gpu), "--out", str(out)]
    done = subprocess.run(cmd + ["--budget-s", "400"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    files = [f for f in out.rglob("*") if f.is_file()]
    assert len(files) <= MAX_FILES and all(f.stat().st_size <= MAX_FILE_BYTES for f in files)
    assert all(len(f.relative_to(out).parts) <= 3 for f in files)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cuda_tests"]["rc"] == 0 and "skipped" in summary["cuda_tests"]["result"]
    assert summary["bench_train"]["train_mol_per_s"] > 0 and summary["bench_decode"]["decode_mol_per_s"] > 0
    assert summary["train_rc"] == 0 and summary["export"]["steps"] == 3
    model = MolVAE.load(out / "model", device="cpu")
    assert model.card["name"] == "gpu-session" and model.card["initialized_from"]["model"].endswith("start")
    assert "val_loss" in (out / "model" / "metrics.csv").read_text()
    assert len((out / "samples.smi").read_text().split()) == 50
