"""CUDA-graph training steps (GPU only): a replayed step computes what the eager step computes."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from molvae.data import collate, length_bucketed_batches, load_dataset
from molvae.datasets import save_token_file
from molvae.model import ModelConfig, SequenceVAE
from molvae.training import CudaGraphTrainStep, TrainConfig, Trainer, make_optimizer, train_step
from tests.conftest import moses_smiles

# Set by scripts/gpu_session.py: a token file of MOSES molecules to use instead of the molsets wheel.
TOKEN_FILE_ENV = "MOLVAE_TEST_TOKEN_FILE"

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


@pytest.fixture(scope="module")
def mols(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graphs")
    tokens = os.environ.get(TOKEN_FILE_ENV)
    if tokens:  # the GPU session's machine has neither RDKit nor MOSES: its carried token file stands in
        data, summary = load_dataset(tokens, limit=1200)
        return save_token_file(folder / "mols.npz", data, summary, "smiles")
    f = folder / "mols.smi"
    f.write_text("\n".join(moses_smiles(1200)) + "\n")
    return f


def _net(vocab_size: int) -> SequenceVAE:
    torch.manual_seed(0)
    net = (
        SequenceVAE(
            ModelConfig(
                vocab_size=vocab_size,
                embedding_dim=32,
                encoder_hidden=64,
                latent_dim=16,
                decoder_hidden=128,
                decoder_layers=2,
            )
        )
        .cuda()
        .train()
    )
    with torch.no_grad():  # σ = e^-30: z = μ, so a step has no noise and two paths can be compared
        net.to_logvar.weight.zero_()
        net.to_logvar.bias.fill_(-60.0)
    return net


def test_replayed_step_equals_the_eager_step(mols) -> None:
    data, _ = load_dataset(str(mols))
    by_width: dict[int, list] = {}
    for index in length_bucketed_batches(data.lengths, 64, seed=0, epoch=0):
        if len(index) == 64:
            seq, lengths = collate(data, index)
            by_width.setdefault(seq.shape[1], []).append((torch.from_numpy(seq).cuda(), torch.from_numpy(lengths)))
    ((x, y),) = [pair[:2] for pair in by_width.values() if len(pair) >= 2][:1]
    cfg = TrainConfig(batch_size=64, lr=1e-3)
    net = _net(len(data.vocab))
    ref = copy.deepcopy(net)
    opts = [make_optimizer(m, cfg) for m in (net, ref)]
    for opt in opts:  # no update: every call sees the same weights
        for group in opt.param_groups:
            group["lr"] = 0.0
    step = CudaGraphTrainStep(net, opts[0], torch.bfloat16, cfg)
    a = step(*x, 0.3)  # eager warm-up, then capture
    b = step(*y, 0.3)  # replay on new inputs
    grads_b = [g.clone() for g in step.grads]
    c = step(*x, 0.3)  # replay on the first inputs again
    assert len(step.graphs) == 1 and step.eager_steps == 1
    ea = train_step(ref, opts[1], x[0], x[1], torch.bfloat16, 0.3, cfg)
    eb = train_step(ref, opts[1], y[0], y[1], torch.bfloat16, 0.3, cfg)
    assert abs(ea["recon"] - eb["recon"]) > 0.01 * ea["recon"]  # the two batches are told apart
    assert c["recon"] == pytest.approx(a["recon"], rel=1e-3)
    for got, want in ((a, ea), (b, eb)):
        assert got["recon"] == pytest.approx(want["recon"], rel=1e-2)
        assert got["kl"] == pytest.approx(want["kl"], rel=1e-2)
    for got, p in zip(grads_b, ref.parameters()):
        assert (got - p.grad).norm() <= 0.03 * p.grad.norm() + 1e-6


def test_training_with_graphs_matches_training_without(mols, tmp_path) -> None:
    results = {}
    for graphs in (True, False):
        cfg = TrainConfig(
            data=str(mols),
            epochs=4,
            batch_size=64,
            lr=2e-3,
            warmup_steps=5,
            kl_weight=0.1,
            kl_warmup_epochs=1,
            val_recon_n=0,
            val_sample_n=0,
            progress=False,
            device="cuda",
            cuda_graphs=graphs,
            seed=1,
        )
        trainer = Trainer(
            tmp_path / str(graphs),
            cfg,
            dict(embedding_dim=32, encoder_hidden=64, latent_dim=16, decoder_hidden=128, decoder_layers=2),
        )
        history = trainer.fit()
        results[graphs] = history[-1]["val_loss"], history[0]["val_loss"]
        if graphs:
            assert isinstance(trainer.step, CudaGraphTrainStep)
            assert len(trainer.step.graphs) >= 3
            assert trainer.step.eager_steps < 0.5 * trainer.state["global_step"]
    (g_last, g_first), (e_last, _) = results[True], results[False]
    assert g_last < 0.9 * g_first  # it learns
    assert g_last == pytest.approx(e_last, rel=0.15)
