"""End-to-end training: overfitting, resume after SIGKILL, determinism."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from molvae.checkpoint import load_state, load_weights
from molvae.chemistry import canonicalize
from molvae.errors import MolvaeError
from molvae.model import MolVAE
from molvae.training import TrainConfig, Trainer, kl_beta, learning_rate
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


def test_overfits_64_molecules(tmp_path) -> None:
    mols = moses_smiles(64)
    f = tmp_path / "mols.smi"
    f.write_text("\n".join(mols) + "\n")
    cfg = TrainConfig(
        data=str(f),
        epochs=160,
        batch_size=32,
        lr=4e-3,
        warmup_steps=10,
        kl_weight=0.0,
        val_fraction=0.0,
        val_recon_n=0,
        val_sample_n=0,
        progress=False,
        seed=0,
    )
    start = time.perf_counter()
    trainer = Trainer(
        tmp_path / "run",
        cfg,
        dict(embedding_dim=32, encoder_hidden=128, latent_dim=64, decoder_hidden=256, decoder_layers=2),
    )
    trainer.fit()
    model = MolVAE(trainer.net.eval(), trainer.vocab, device="cpu")
    recon = model.reconstruct(mols)
    exact = sum(canonicalize(r) == canonicalize(s) for r, s in zip(recon, mols)) / len(mols)
    print(f"exact greedy reconstruction {exact:.3f} after {time.perf_counter() - start:.1f} s")
    assert exact >= 0.95


def test_schedules() -> None:
    cfg = TrainConfig(kl_weight=0.4, kl_warmup_epochs=2, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert kl_beta(0, 100, 1000, cfg) == 0.0
    assert kl_beta(100, 100, 1000, cfg) == pytest.approx(0.2)
    assert kl_beta(500, 100, 1000, cfg) == pytest.approx(0.4)
    cyc = TrainConfig(kl_schedule="cyclical", kl_cycles=4, kl_weight=1.0)
    assert kl_beta(0, 100, 1000, cyc) == 0.0
    assert kl_beta(125, 100, 1000, cyc) == pytest.approx(1.0)
    assert kl_beta(200, 100, 1000, cyc) == pytest.approx(1.0)
    assert kl_beta(250, 100, 1000, cyc) == 0.0  # next cycle restarts
    assert learning_rate(0, 1000, cfg) == pytest.approx(1e-4)
    assert learning_rate(10, 1000, cfg) == pytest.approx(1e-3)
    assert learning_rate(1000, 1000, cfg) == pytest.approx(1e-4)
    # A run shorter than the warm-ups still reaches the peak LR and the full KL weight.
    short = TrainConfig(kl_weight=0.5, kl_warmup_epochs=2, lr=1e-3, warmup_steps=100)
    assert learning_rate(8, 18, short) == pytest.approx(1e-3)  # warms up over the first 9 of 18 steps
    assert learning_rate(17, 18, short) < 0.2e-3
    assert kl_beta(18, 9, 18, short) == pytest.approx(0.5) and kl_beta(9, 9, 18, short) == pytest.approx(0.25)
    assert kl_beta(5, 9, 5, short) == pytest.approx(0.5)  # --max-steps 5 in a 9-step epoch


def _stopped_after(calls: int, monkeypatch) -> None:
    """Make the run receive SIGINT during its ``calls``-th training step, as a Ctrl-C would land."""
    import molvae.training.trainer as trainer_module  # where Trainer.fit looks make_train_step up

    real = trainer_module.make_train_step

    def make(*args, **kwargs):
        step, count = real(*args, **kwargs), [0]

        def interrupted(*a, **kw):
            count[0] += 1
            if count[0] == calls:
                signal.raise_signal(signal.SIGINT)
            return step(*a, **kw)

        return interrupted

    monkeypatch.setattr(trainer_module, "make_train_step", make)


@pytest.mark.parametrize("calls", [4, 9], ids=["mid-epoch", "at-the-last-step"])
def test_a_run_stopped_by_a_signal_resumes_to_the_same_weights_and_metrics(
    resume_data, tmp_path, monkeypatch, calls: int
) -> None:
    """The epoch's running means survive the stop, and a stop after the last step still ends in a saved model."""
    from molvae.training import TrainingInterrupted

    data = tmp_path / "mols.smi"
    data.write_text("\n".join(resume_data.read_text().split()[:300]) + "\n")
    cfg = dict(
        data=str(data),
        epochs=2,
        batch_size=32,
        max_steps=9,
        val_fraction=0.1,
        val_recon_n=5,
        val_sample_n=5,
        progress=False,
        seed=1,
    )
    arch = dict(embedding_dim=16, encoder_hidden=32, latent_dim=16, decoder_hidden=64, decoder_layers=1)
    reference = Trainer(tmp_path / "ref", TrainConfig(**cfg), arch).fit()
    with monkeypatch.context() as patch:
        _stopped_after(calls, patch)
        with pytest.raises(TrainingInterrupted):
            Trainer(tmp_path / "run", TrainConfig(**cfg), arch).fit()
    assert not (tmp_path / "run" / "model.safetensors").exists()
    resumed = Trainer(tmp_path / "run", resume=True).fit()
    _assert_same_weights(tmp_path / "run", tmp_path / "ref")
    timing = ("elapsed_s", "train_mol_per_s")
    assert len(resumed) == len(reference) == 1
    assert {k: v for k, v in resumed[0].items() if k not in timing} == {
        k: v for k, v in reference[0].items() if k not in timing
    }
    assert pd.read_csv(tmp_path / "run" / "metrics.csv")["step"].tolist() == [9]


# ------------------------------------------------------------------- resume
def _molvae(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "molvae.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


@pytest.fixture(scope="module")
def resume_data(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("resume") / "mols.smi"
    f.write_text("\n".join(moses_smiles(1200)) + "\n")
    return f


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
        "5",
        "--val-recon-n",
        "20",
        "--val-sample-n",
        "20",
        "--no-progress",
        *TINY,
        *extra,
    ]


@pytest.fixture(scope="module")
def reference_run(resume_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = _molvae(*_train_args(resume_data, out))
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout
    return out


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_weights(a / "model.safetensors"), load_weights(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training ended before it could be killed:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for a checkpoint")
        time.sleep(0.02)


def _resume_state(out: Path) -> dict | None:
    try:
        return load_state(out / "resume.pt")["state"]
    except MolvaeError:
        return None


def test_sigkill_after_epoch_checkpoint_resumes_to_identical_weights(resume_data, reference_run, tmp_path) -> None:
    # Kill somewhere inside epoch 2. It lasts about a second on CPU, less than epoch 1 (which
    # warms up), so a kill that came too late, after the run finished, is retried with a
    # shorter wait; the last try kills as soon as epoch 1's checkpoint is seen.
    window = None
    for attempt in range(4):
        out = tmp_path / f"run{attempt}"
        proc = _molvae(*_train_args(resume_data, out, "--checkpoint-minutes", "1000"))
        _wait_for(lambda out=out: (s := _resume_state(out)) is not None and s["epoch"] >= 1, proc)
        if window is None:
            window = 0.5 * pd.read_csv(out / "metrics.csv")["elapsed_s"].iloc[0]  # epoch 1's training time
        time.sleep(random.uniform(0.0, window) if attempt < 3 else 0.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if _resume_state(out)["epoch"] == 1:
            break
        window /= 4
    assert _resume_state(out)["epoch"] == 1
    resumed = _molvae("train", "--out", str(out), "--resume", "--no-progress")
    stdout, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stdout
    assert "resumed from" in stdout
    _assert_same_weights(out, reference_run)
    assert (out / "metrics.csv").read_text().count("\n") == 3  # header + 2 epochs


def test_sigkill_mid_epoch_resumes_from_mid_epoch_checkpoint(resume_data, reference_run, tmp_path) -> None:
    out = tmp_path / "run"
    # A checkpoint after (almost) every step, so the kill lands after a mid-epoch one.
    proc = _molvae(*_train_args(resume_data, out, "--checkpoint-minutes", "0.0001"))
    target = random.randint(5, 25)
    _wait_for(lambda out=out: (s := _resume_state(out)) is not None and s["step_in_epoch"] >= target, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = _resume_state(out)
    assert state["epoch"] == 0 and state["step_in_epoch"] > 0
    resumed = _molvae("train", "--out", str(out), "--resume", "--no-progress", "--checkpoint-minutes", "1000")
    stdout, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stdout
    _assert_same_weights(out, reference_run)
    assert not list(out.glob(".*.tmp"))  # temp files of interrupted writes are cleaned up


def test_sigterm_saves_checkpoint_and_exits_130(resume_data, tmp_path) -> None:
    out = tmp_path / "run"
    proc = _molvae(*_train_args(resume_data, out, "--checkpoint-minutes", "1000"))
    _wait_for(lambda: (out / "config.json").exists(), proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout
    assert "continue with --resume" in stdout
    state = _resume_state(out)
    assert state is not None
    # the time trained before the signal is kept, so a resumed run reports its whole cost
    assert state["step_in_epoch"] > 0 or state["epoch"] > 0
    assert state["elapsed"] > 0


def test_new_run_refuses_to_overwrite(reference_run) -> None:
    with pytest.raises(MolvaeError, match="already holds a run"):
        Trainer(reference_run, TrainConfig())


def test_max_steps_stops_mid_epoch_and_schedules_span_it(resume_data, tmp_path) -> None:
    out = tmp_path / "run"
    cfg = TrainConfig(
        data=str(resume_data),
        epochs=3,
        batch_size=32,
        max_steps=7,
        warmup_steps=2,
        val_recon_n=5,
        val_sample_n=5,
        progress=False,
    )
    arch = dict(embedding_dim=16, encoder_hidden=32, latent_dim=16, decoder_hidden=64, decoder_layers=1)
    trainer = Trainer(out, cfg, arch)
    history = trainer.fit()
    assert trainer.steps_per_epoch > 7  # so the stop falls inside the first epoch
    assert trainer.state["global_step"] == 7
    assert len(history) == 1 and history[0]["step"] == 7
    # the cosine schedule ends at max_steps, not after 3 epochs
    assert trainer.total_steps == 7
    assert history[0]["lr"] == pytest.approx(learning_rate(6, 7, cfg))
    assert history[0]["lr"] < 0.25 * cfg.lr
    assert MolVAE.load(out).config.latent_dim == 16


# ---------------------------------------------------------------- fine-tuning
def test_init_from_starts_at_the_parent_weights_and_keeps_its_vocabulary(reference_run, tmp_path) -> None:
    # Selenium is not in MOSES, so the parent's vocabulary lacks it: those two are dropped, counted.
    mols = moses_smiles(200, offset=5000) + ["C[Se]C", "c1cc[se]c1"]
    data = tmp_path / "focus.smi"
    data.write_text("\n".join(mols) + "\n")
    source = tmp_path / "parent"
    shutil.copytree(reference_run, source)
    parent = MolVAE.load(source)
    assert "[Se]" not in parent.vocab.tokens
    # A learning rate of ~0 leaves the weights where they started: the parent's, not a random init.
    cfg = TrainConfig(
        data=str(data),
        epochs=1,
        batch_size=32,
        lr=1e-12,
        warmup_steps=0,
        weight_decay=0.0,
        val_fraction=0.0,
        val_recon_n=0,
        val_sample_n=0,
        progress=False,
        init_from=str(source),
    )
    trainer = Trainer(tmp_path / "ft", cfg)
    trainer.fit()
    assert trainer.vocab.tokens == parent.vocab.tokens
    assert trainer.summary.dropped["unknown_token"] == 2
    child = load_weights(tmp_path / "ft" / "model.safetensors")
    for key, value in parent.net.state_dict().items():
        assert torch.allclose(child[key], value, atol=1e-6), key
    info = json.loads((tmp_path / "ft" / "run_info.json").read_text())["init_from"]
    assert info["source"] == str(source)
    assert info["weights_sha256"] == hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
    assert info["weights_sha256"] == parent.weights_sha256()
    # Resuming the fine-tuned run needs no parent any more: its weights are in resume.pt.
    shutil.rmtree(source)
    assert Trainer(tmp_path / "ft", resume=True, epochs_override=2).fit()[-1]["epoch"] == 2


def test_init_from_really_trains(reference_run, resume_data, tmp_path) -> None:
    cfg = TrainConfig(
        data=str(resume_data),
        epochs=1,
        batch_size=32,
        max_steps=5,
        lr=1e-3,
        warmup_steps=0,
        val_fraction=0.0,
        val_recon_n=0,
        val_sample_n=0,
        progress=False,
        init_from=str(reference_run),
    )
    Trainer(tmp_path / "ft", cfg).fit()
    before, after = MolVAE.load(reference_run).net.state_dict(), load_weights(tmp_path / "ft" / "model.safetensors")
    assert any(not torch.allclose(before[k], after[k]) for k in before)


def test_init_from_refuses_a_different_architecture_or_representation(reference_run, resume_data, tmp_path) -> None:
    cfg = TrainConfig(data=str(resume_data), epochs=1, progress=False, init_from=str(reference_run))
    with pytest.raises(MolvaeError, match=r"fixes the architecture.*decoder_hidden=128 \(model: 64\)"):
        Trainer(tmp_path / "a", cfg, {"decoder_hidden": 128}).fit()
    with pytest.raises(MolvaeError, match="is a smiles model.*--representation smiles"):
        Trainer(
            tmp_path / "b",
            TrainConfig(
                data=str(resume_data), epochs=1, progress=False, representation="selfies", init_from=str(reference_run)
            ),
        ).fit()
    with pytest.raises(MolvaeError, match="model directory not found"):
        Trainer(tmp_path / "c", TrainConfig(data=str(resume_data), init_from=str(tmp_path / "nowhere"))).fit()


def test_validation_reports_active_units(tmp_path) -> None:
    from molvae.metrics import active_units

    f = tmp_path / "mols.smi"
    f.write_text("\n".join(moses_smiles(200)) + "\n")
    # No KL term and a high learning rate: the codes spread out within one short epoch.
    cfg = TrainConfig(
        data=str(f),
        epochs=1,
        batch_size=32,
        lr=4e-3,
        warmup_steps=1,
        kl_weight=0.0,
        val_fraction=0.25,
        val_recon_n=0,
        val_sample_n=0,
        precision="fp32",
        progress=False,
        seed=0,
    )
    trainer = Trainer(
        tmp_path / "run",
        cfg,
        dict(embedding_dim=16, encoder_hidden=32, latent_dim=16, decoder_hidden=32, decoder_layers=1),
    )
    trainer.fit()
    units = pd.read_csv(tmp_path / "run" / "metrics.csv")["val_active_units"].tolist()
    assert len(units) == 1 and 0 < units[0] <= 16
    # The same count from the saved model's posterior means of the validation molecules.
    model = MolVAE.load(tmp_path / "run", device="cpu")
    assert units[0] == active_units(model.encode(list(trainer.val_data.smiles)))
