"""export_latest: a run's newest weights (mid-epoch checkpoints included) as a float16 model directory."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from molvae.datasets import prepare_molecules, save_token_file
from molvae.model import MolVAE
from molvae.training import TrainConfig, Trainer
from molvae.training.export import export_latest, latest_model

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C1CCNCC1", "Clc1ccccc1Br", "CC(C)(C)OC(=O)N"]
TINY = dict(embedding_dim=8, encoder_hidden=16, latent_dim=4, decoder_hidden=16, decoder_layers=1)


def test_export_takes_the_checkpoint_newer_than_the_epoch_weights(tmp_path) -> None:
    data, summary = prepare_molecules(SMILES, "smiles", n_jobs=1)
    mols = save_token_file(tmp_path / "mols.npz", data, summary, "smiles")
    cfg = TrainConfig(data=str(mols), epochs=1, batch_size=2, val_fraction=0.34, val_recon_n=0, val_sample_n=0)
    trainer = Trainer(tmp_path / "run", cfg, TINY)
    trainer.fit()
    with torch.no_grad():  # a later mid-epoch checkpoint: only resume.pt changes
        for p in trainer.net.parameters():
            p.add_(0.5)
    trainer.state["global_step"] += 1
    trainer._checkpoint()
    model, state = latest_model(tmp_path / "run")
    assert state["global_step"] == trainer.state["global_step"]
    for name, tensor in trainer.net.state_dict().items():
        assert torch.equal(model.net.state_dict()[name], tensor)
    card = export_latest(tmp_path / "run", tmp_path / "export", "test")
    assert card["steps"] == trainer.state["global_step"] and card["epochs"] == 1
    assert all(t.dtype == torch.float16 for t in load_file(tmp_path / "export" / "model.safetensors").values())
    exported = MolVAE.load(tmp_path / "export", device="cpu")
    assert exported.card["name"] == "test" and exported.vocab == trainer.vocab
    weight = trainer.net.state_dict()["output.weight"]
    assert torch.allclose(exported.net.state_dict()["output.weight"], weight, atol=1e-2)
