"""Shared fixtures: real MOSES molecules from the molsets wheel, small trained models."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from molvae.data import moses_file

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def moses_smiles(n: int, split: str = "train", offset: int = 0) -> list[str]:
    """The first ``n`` SMILES (after ``offset``) of a MOSES split."""
    out: list[str] = []
    with gzip.open(moses_file(split), "rt") as fh:
        next(fh)  # header
        for i, line in enumerate(fh):
            if i < offset:
                continue
            out.append(line.strip())
            if len(out) >= n:
                break
    return out


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own tokenized-data cache, never ~/.cache."""
    monkeypatch.setenv("MOLVAE_CACHE", str(tmp_path_factory.getbasetemp() / "molvae-cache"))


@pytest.fixture(scope="session")
def moses_train_1k() -> list[str]:
    return moses_smiles(1000)


SMALL_ARCH = dict(embedding_dim=32, encoder_hidden=128, latent_dim=32, decoder_hidden=256, decoder_layers=2)


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory) -> Path:
    """A small SMILES model trained on 3,000 MOSES molecules (about half a minute on 2 cores).

    Good enough to decode mostly valid molecules and reconstruct some; used by the
    exploration, optimization and CLI tests. Returns the run directory.
    """
    from molvae.training import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("small-model") / "run"
    cfg = TrainConfig(
        data="moses",
        limit=3000,
        epochs=4,
        batch_size=64,
        lr=3e-3,
        warmup_steps=20,
        kl_weight=0.05,
        kl_warmup_epochs=1,
        val_fraction=0.05,
        val_recon_n=50,
        val_sample_n=50,
        progress=False,
        seed=0,
    )
    Trainer(out, cfg, SMALL_ARCH).fit()
    return out


@pytest.fixture(scope="session")
def small_model(small_model_dir):
    from molvae.model import MolVAE

    return MolVAE.load(small_model_dir, device="cpu")


_HOLD_LOCK = """
import sys, time
from molvae.checkpoint import lock_run_dir
lock = lock_run_dir(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def lock_holder():
    """Start a real second process that locks a run directory and keeps it (killed at teardown)."""
    procs: list[subprocess.Popen] = []

    def hold(directory) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(directory)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()
        proc.stdout.close()
