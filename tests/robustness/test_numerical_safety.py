"""NaN/Inf during training: the step is skipped and counted; a run that keeps diverging stops clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from molvae.data import collate, prepare_molecules
from molvae.model import ModelConfig, SequenceVAE
from molvae.training import MAX_CONSECUTIVE_BAD_STEPS, TrainConfig, Trainer, TrainingDiverged, train_step
from tests.conftest import moses_smiles

TINY = dict(embedding_dim=8, encoder_hidden=16, latent_dim=4, decoder_hidden=16, decoder_layers=1)


def test_nan_step_is_skipped_and_weights_untouched() -> None:
    data, _ = prepare_molecules(moses_smiles(16), n_jobs=1)
    torch.manual_seed(0)
    net = SequenceVAE(ModelConfig(vocab_size=len(data.vocab), **TINY))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    seq, lengths = (torch.from_numpy(a) for a in collate(data, np.arange(16)))
    ok = train_step(net, opt, seq, lengths, torch.float32, 0.1, TrainConfig())
    assert ok is not None and np.isfinite(ok["loss"])
    with torch.no_grad():
        net.output.bias[0] = float("nan")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert train_step(net, opt, seq, lengths, torch.float32, 0.1, TrainConfig()) is None
    after = net.state_dict()
    for key in before:  # NaN compares unequal to itself, so compare with NaN mapped to 0
        assert torch.equal(before[key].nan_to_num(), after[key].nan_to_num()), key


def test_repeated_nan_stops_with_clear_message(tmp_path) -> None:
    f = tmp_path / "mols.smi"
    # 720 molecules = 23 batches of 32: enough steps for the consecutive-NaN limit within one epoch.
    f.write_text("\n".join(moses_smiles(720)) + "\n")
    # An absurd learning rate blows the weights up after the first step; every later loss is NaN/Inf.
    cfg = TrainConfig(
        data=str(f),
        epochs=1,
        batch_size=32,
        lr=1e30,
        warmup_steps=0,
        val_fraction=0.0,
        progress=False,
        precision="fp32",
    )
    trainer = Trainer(tmp_path / "run", cfg, TINY)
    with pytest.raises(TrainingDiverged, match=f"NaN or Inf for {MAX_CONSECUTIVE_BAD_STEPS} consecutive steps") as info:
        trainer.fit()
    assert "no checkpoint had been written yet" in str(info.value)
    assert trainer.state["skipped_steps"] >= MAX_CONSECUTIVE_BAD_STEPS
    assert not (tmp_path / "run" / "resume.pt").exists()
