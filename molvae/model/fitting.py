"""Latent codes fitted to decode back to given molecules (gradient steps on z, the weights fixed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from molvae.errors import ConfigError
from molvae.tokenizers import BOS_ID, EOS_ID, PAD_ID

if TYPE_CHECKING:
    from molvae.model.vae import MolVAE


def fit_latents(
    model: MolVAE, smiles: Sequence[str], max_steps: int = 400, lr: float = 0.05, check_every: int = 25
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Latent codes [N, D] whose greedy decode is each input molecule, where one can be found.

    The encoder's posterior mean often decodes to a relative of a molecule unlike
    the training data (a drug outside MOSES's weight window, say). Starting from
    that mean, this runs Adam on z alone to lower the decoder's teacher-forced
    negative log-likelihood of the molecule's tokens (the weights stay fixed), and
    stops for each molecule as soon as its greedy decode is the input (checked every
    ``check_every`` steps). Molecules the mean already reconstructs keep the mean.

    Returns the codes and one dict per molecule: ``reconstructed`` (the greedy
    decode of the returned code is the input), ``steps`` (optimizer steps taken;
    0 = the mean), ``nll`` (teacher-forced NLL of the molecule at the returned code,
    nats) and ``distance`` (from the posterior mean). A molecule that is still not
    reconstructed after ``max_steps`` gets the last code, flagged
    ``reconstructed=False``. Fitted codes can lie far outside the prior (norms up
    to about 50 with the bundled models, against about sqrt(D) for prior draws).
    Raises like :meth:`MolVAE.encode` for invalid molecules and unknown tokens.
    """
    if isinstance(smiles, str):
        raise TypeError("fit_latents expects a list of SMILES, not a single string")
    for name, value in (("max_steps", max_steps), ("check_every", check_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    ids = [model.token_ids(s) for s in smiles]
    n = len(ids)
    if n == 0:
        return np.empty((0, model.config.latent_dim), dtype=np.float32), []
    targets = [model.canonical(s) for s in smiles]
    mu = model.encode_ids(ids)

    def reconstructed(z: np.ndarray) -> np.ndarray:
        decoded = model.decode(z, strategy="greedy")
        return np.array([model.canonical(d) == t if d else False for d, t in zip(decoded, targets)])

    length = max(len(x) for x in ids) + 2
    seq = torch.full((n, length), PAD_ID, dtype=torch.long)
    for row, x in enumerate(ids):
        seq[row, : len(x) + 2] = torch.tensor([BOS_ID, *x, EOS_ID])
    seq = seq.to(model.device)
    inputs, target_ids = seq[:, :-1], seq[:, 1:]

    def nll(z: torch.Tensor) -> torch.Tensor:
        """Teacher-forced NLL of each molecule [N] (nats) given its code."""
        logits = model.net.decode_logits(z, inputs).float()
        return F.cross_entropy(logits.transpose(1, 2), target_ids, ignore_index=PAD_ID, reduction="none").sum(dim=1)

    best = mu.copy()
    done = reconstructed(mu)
    steps = np.zeros(n, dtype=np.int64)
    z = torch.tensor(mu, device=model.device, requires_grad=True)
    optimizer = torch.optim.Adam([z], lr=lr)
    step = 0
    # Only z is optimized: torch.autograd.grad leaves the weights' .grad untouched.
    # cuDNN's RNN backward refuses eval mode, and eval mode (no dropout) is wanted here.
    while not done.all() and step < max_steps:
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            (z.grad,) = torch.autograd.grad(nll(z).sum(), [z])
        z.grad[torch.as_tensor(done, device=model.device)] = 0.0
        optimizer.step()
        step += 1
        if step % check_every == 0 or step == max_steps:
            current = z.detach().cpu().numpy()
            now = reconstructed(current) & ~done
            best[now] = current[now]
            steps[now] = step
            done |= now
    last = z.detach().cpu().numpy()
    best[~done] = last[~done]
    steps[~done] = step
    with torch.no_grad():
        per_mol = nll(torch.as_tensor(best, device=model.device)).cpu().numpy()
    info = [
        {
            "reconstructed": bool(done[i]),
            "steps": int(steps[i]),
            "nll": float(per_mol[i]),
            "distance": float(np.linalg.norm(best[i] - mu[i])),
        }
        for i in range(n)
    ]
    return best.astype(np.float32), info
