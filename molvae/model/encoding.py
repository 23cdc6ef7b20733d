"""Encoding tokenized molecules in length-sorted batches: padding built in one vectorized gather."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch

from molvae.batching import iter_batches
from molvae.model.network import SequenceVAE
from molvae.tokenizers import EOS_ID, PAD_ID


@torch.no_grad()
def encode_token_ids(net: SequenceVAE, ids: Sequence[list[int] | None], device: torch.device, batch_size: int,
                     eps: torch.Tensor | None = None, static_shapes: bool = False) -> np.ndarray:
    """Codes [N, D] (float32) of token-id lists (None: a NaN row): μ, or μ + σ ⊙ ``eps[i]`` for row ``i``.

    ``static_shapes``: encode over the padded width instead of packed sequences (see
    :meth:`SequenceVAE.encode`); on CPU in bf16 packed shapes make oneDNN cache a primitive
    for nearly every batch, and memory grows with the input (docs/PERFORMANCE.md).
    """
    out = np.full((len(ids), net.config.latent_dim), np.nan, dtype=np.float32)
    # One flat token array and vectorized padding: per-molecule Python work capped GPU encoding.
    n_tokens = np.fromiter((-1 if x is None else len(x) for x in ids), dtype=np.int64, count=len(ids))
    good = np.flatnonzero(n_tokens >= 0)
    # Longest batches first: each later batch fits in the memory blocks the earlier ones freed
    # (molvae.runtime keeps freed memory in the process), and an out-of-memory batch size shows
    # on the first batch. Ascending order made every batch ask for larger blocks (docs/PERFORMANCE.md).
    good = good[np.argsort(-n_tokens[good], kind="stable")]
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(np.maximum(n_tokens, 0), out=offsets[1:])
    # A trailing PAD: indices clamped past the last molecule land on it, even when no molecule has a token.
    tokens_then_pad = itertools.chain((t for x in ids if x is not None for t in x), (PAD_ID,))
    flat_t = torch.from_numpy(np.fromiter(tokens_then_pad, dtype=np.int32, count=int(offsets[-1]) + 1))

    def encode_batch(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        chunk = good[start:stop]
        n = torch.from_numpy(n_tokens[chunk])
        cols = torch.arange(int(n.max()) + 1)
        # Gather a full rectangle (indices past a row's end clamped), then blank the padding.
        index = (torch.from_numpy(offsets[chunk])[:, None] + cols).clamp_(max=len(flat_t) - 1)
        tokens = torch.where(cols < n[:, None], flat_t[index], PAD_ID).long()
        tokens[torch.arange(len(chunk)), n] = EOS_ID
        mu, logvar = net.encode(tokens.to(device), n + 1, static_shapes=static_shapes)
        z = mu.float()
        if eps is not None:
            z = z + eps[torch.from_numpy(chunk)].to(device) * torch.exp(0.5 * logvar.float())
        return chunk, z.cpu().numpy()

    for chunk, z in iter_batches(encode_batch, len(good), batch_size, "encode"):
        out[chunk] = z
    return out
