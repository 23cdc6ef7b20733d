"""Shared pieces of the benchmark scripts: presets, MOSES data, the MOSES reference VAE, timing.

The reference is a re-implementation of the MOSES VAE (Polykovskiy et al. 2020,
moses/vae/model.py and trainer.py, defaults): embedding of size = vocabulary,
unidirectional GRU encoder 256, decoder GRU 3×512 fed [embedding, z] at every
step with h0 = Linear(z) repeated over layers, latent 128, packed sequences,
random (not length-sorted) batches of 512, fp32, Adam, gradient clip 50, and
sampling that always runs max_len=100 steps for the whole batch.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pack_sequence, pad_packed_sequence, pad_sequence

from molvae.data import TokenizedData, load_dataset
from molvae.runtime import tune_allocator
from molvae.tokenizers import BOS_ID, EOS_ID, PAD_ID

# As the molvae command does; MOLVAE_TUNE_MALLOC=0 measures without (molvae.runtime).
ALLOCATOR_TUNED = tune_allocator()

PRESETS = {
    # molvae's defaults
    "default": dict(model=dict(), batch_size=256),
    # the MOSES reference size: encoder GRU 256, decoder 3x512, latent 128, batch 512
    "moses-reference": dict(
        model=dict(encoder_hidden=256, decoder_hidden=512, decoder_layers=3, latent_dim=128), batch_size=512
    ),
}


def moses_data(n: int, source: str = "moses") -> TokenizedData:
    """A random n of MOSES train: the file's first lines are shorter-than-average similar molecules.

    ``source`` may name a token file of it instead (``prepare_gpu_session.py`` writes one), which
    needs neither RDKit nor the molsets wheel: the GPU machine has neither.
    """
    data, _ = load_dataset(source, sample=n)
    return data


def at_least_one(text: str) -> int:
    """argparse ``type`` for counts such as ``--repeats``: an integer >= 1."""
    value = int(text)  # a ValueError becomes argparse's own "invalid at_least_one value" message
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    """Seconds per call of ``fn`` (best of ``repeat``)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def emit(figures: dict) -> None:
    """Print figures; the last line is one JSON object for automation."""
    for key, value in figures.items():
        print(f"{key:>28}: {value:.4g}" if isinstance(value, float) else f"{key:>28}: {value}")
    print(json.dumps(figures))


class MosesReferenceVAE(nn.Module):
    """The MOSES VAE at its published default size (see module docstring)."""

    def __init__(self, vocab_size: int, q_d_h: int = 256, d_z: int = 128, d_d_h: int = 512, d_n_layers: int = 3):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, vocab_size, padding_idx=PAD_ID)
        self.encoder_rnn = nn.GRU(vocab_size, q_d_h, num_layers=1, batch_first=True, bidirectional=False)
        self.q_mu = nn.Linear(q_d_h, d_z)
        self.q_logvar = nn.Linear(q_d_h, d_z)
        self.decoder_rnn = nn.GRU(vocab_size + d_z, d_d_h, num_layers=d_n_layers, batch_first=True)
        self.decoder_lat = nn.Linear(d_z, d_d_h)
        self.decoder_fc = nn.Linear(d_d_h, vocab_size)
        self.d_z = d_z
        self.n_layers = d_n_layers

    def forward(self, x: list[torch.Tensor], kl_weight: float = 0.05) -> torch.Tensor:
        # encoder
        emb = [self.embedding(s) for s in x]
        packed = pack_sequence(emb)
        _, h = self.encoder_rnn(packed, None)
        h = h[-1]
        mu, logvar = self.q_mu(h), self.q_logvar(h)
        z = mu + (logvar / 2).exp() * torch.randn_like(mu)
        kl = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(1).mean()
        # decoder
        lengths = [len(s) for s in x]
        xp = pad_sequence(x, batch_first=True, padding_value=PAD_ID)
        x_emb = self.embedding(xp)
        z0 = z.unsqueeze(1).repeat(1, x_emb.size(1), 1)
        x_input = pack_padded_sequence(torch.cat([x_emb, z0], dim=-1), lengths, batch_first=True)
        h0 = self.decoder_lat(z).unsqueeze(0).repeat(self.n_layers, 1, 1)
        out, _ = self.decoder_rnn(x_input, h0)
        out, _ = pad_packed_sequence(out, batch_first=True)
        y = self.decoder_fc(out)
        recon = F.cross_entropy(
            y[:, :-1].contiguous().view(-1, y.size(-1)), xp[:, 1:].contiguous().view(-1), ignore_index=PAD_ID
        )
        return kl_weight * kl + recon

    @torch.no_grad()
    def sample(self, n: int, max_len: int = 100, temp: float = 1.0) -> torch.Tensor:
        z = torch.randn(n, self.d_z)
        z0 = z.unsqueeze(1)
        h = self.decoder_lat(z).unsqueeze(0).repeat(self.n_layers, 1, 1)
        w = torch.full((n,), BOS_ID, dtype=torch.long)
        x = torch.full((n, max_len), PAD_ID, dtype=torch.long)
        x[:, 0] = BOS_ID
        eos_mask = torch.zeros(n, dtype=torch.bool)
        for i in range(1, max_len):
            x_input = torch.cat([self.embedding(w).unsqueeze(1), z0], dim=-1)
            o, h = self.decoder_rnn(x_input, h)
            y = F.softmax(self.decoder_fc(o.squeeze(1)) / temp, dim=-1)
            w = torch.multinomial(y, 1)[:, 0]
            x[~eos_mask, i] = w[~eos_mask]
            eos_mask = eos_mask | (w == EOS_ID)
        return x


def reference_batches(data: TokenizedData, batch_size: int, n_batches: int, seed: int = 0) -> list[list[torch.Tensor]]:
    """MOSES-style batches: random molecules, BOS x EOS tensors sorted by length (descending)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        idx = rng.choice(len(data), size=batch_size, replace=False)
        seqs = [torch.tensor([BOS_ID, *data.ids[data.offsets[i] : data.offsets[i + 1]].tolist(), EOS_ID]) for i in idx]
        seqs.sort(key=len, reverse=True)
        out.append(seqs)
    return out
