"""The figures of an epoch's validation: loss, token accuracy, active latent units, exact
reconstruction, and the validity, uniqueness and novelty of prior samples.

:mod:`molvae.chemistry` is imported where used: it loads RDKit, which only the validating rank
needs, which would lengthen every training process's start, and which a run with
``val_recon_n`` and ``val_sample_n`` at 0 does without (a GPU machine with no RDKit).
"""

from __future__ import annotations

import numpy as np
import torch

from molvae.active_units import active_units
from molvae.datasets import TokenizedData, length_bucketed_batches
from molvae.model import MolVAE, SequenceVAE, run_in_precision, vae_loss
from molvae.tokenizers import Vocabulary
from molvae.training.config import TrainConfig
from molvae.training.steps import batch_tensors


@torch.no_grad()
def validate_network(
    net: SequenceVAE,
    vocab: Vocabulary,
    val_data: TokenizedData,
    known: set[str],
    cfg: TrainConfig,
    dtype: torch.dtype,
    device: torch.device,
    beta: float,
    epoch: int,
) -> dict[str, float]:
    """Validation loss, token accuracy, active latent units, exact reconstruction and prior-sample validity/uniqueness.

    ``known`` holds the run's molecules (canonical SMILES), against which prior samples count
    as novel; ``beta`` weighs the KL term of the loss; ``epoch`` seeds the prior samples.
    """
    net.eval()
    out: dict[str, float] = {}
    if len(val_data):
        out.update(validation_losses(net, val_data, cfg, dtype, device, beta))
    model = MolVAE(net, vocab, device=device, precision="fp32")
    if len(val_data) and cfg.val_recon_n:
        out["val_exact_recon"] = exact_reconstruction(model, val_data, cfg.val_recon_n)
    if cfg.val_sample_n:
        out.update(prior_sample_quality(model, cfg.val_sample_n, cfg.seed + epoch, known))
    net.train()
    return out


def validation_losses(
    net: SequenceVAE, val_data: TokenizedData, cfg: TrainConfig, dtype: torch.dtype, device: torch.device, beta: float
) -> dict[str, float]:
    """Loss, its terms, token accuracy and active units over the first ``cfg.val_max`` validation molecules."""
    n = min(len(val_data), cfg.val_max)
    sub = val_data.subset(np.arange(n))
    totals = {"recon": 0.0, "kl": 0.0, "correct": 0, "tokens": 0}
    means = []
    # Validation must not shift the training RNG streams (the CPU's and this GPU's).
    gpus = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(cfg.seed + 7919)
        for index in length_bucketed_batches(sub.lengths, cfg.batch_size, 0, 0, shuffle=False):
            seq, lengths = batch_tensors(sub, index, device)
            logits, mu, logvar = run_in_precision(net, dtype, "forward", seq, lengths)
            losses = vae_loss(logits, seq[:, 1:], mu, logvar, beta)
            totals["recon"] += float(losses["recon"]) * len(index)
            totals["kl"] += float(losses["kl"]) * len(index)
            means.append(mu.float().cpu().numpy())
            target = seq[:, 1:]
            mask = target != 0
            totals["correct"] += int(((logits.argmax(-1) == target) & mask).sum())
            totals["tokens"] += int(mask.sum())
    out = {"val_recon": totals["recon"] / n, "val_kl": totals["kl"] / n}
    out["val_loss"] = out["val_recon"] + beta * out["val_kl"]
    out["val_token_acc"] = totals["correct"] / max(1, totals["tokens"])
    if n >= 2:  # posterior collapse shows as few active units while the KL term looks healthy
        out["val_active_units"] = active_units(np.concatenate(means))
    return out


def exact_reconstruction(model: MolVAE, val_data: TokenizedData, n: int) -> float:
    """The share of the first ``n`` validation molecules that greedy decoding of their mean code gives back."""
    from molvae.chemistry import canonicalize

    m = min(len(val_data), n)
    ids = [list(map(int, val_data.ids[val_data.offsets[i] : val_data.offsets[i + 1]])) for i in range(m)]
    z = model.encode_ids(ids)
    decoded = model.decode(z, strategy="greedy")
    hits = sum(canonicalize(d) == s for d, s in zip(decoded, val_data.smiles[:m]))
    return hits / m


def prior_sample_quality(model: MolVAE, n: int, seed: int, known: set[str]) -> dict[str, float]:
    """Validity, uniqueness and novelty (against ``known``) of ``n`` molecules decoded from prior samples."""
    from molvae.chemistry import canonicalize

    # N(0, I), the prior training shapes the codes towards (a stored prior would be stale here)
    samples = model.sample(n, seed=seed, prior="standard")
    canon = [canonicalize(s) for s in samples]
    valid = [c for c in canon if c is not None]
    return {
        "prior_validity": len(valid) / len(samples),
        "prior_uniqueness": len(set(valid)) / len(valid) if valid else 0.0,
        "prior_novelty": (sum(c not in known for c in set(valid)) / len(set(valid))) if valid else 0.0,
    }
