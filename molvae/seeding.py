"""Random draws keyed by position, so a seed means the same molecules however the work is batched.

A sampled decode draws one exponential variate per (molecule, step, token). Drawn
from a ``torch.Generator`` in batches, those variates would depend on the batch
size, on which rows had already finished (finished rows are dropped), on an
out-of-memory retry at half the batch, and on the device. Here each variate is a
hash of ``(seed, key, step, token)``, where ``key`` numbers the molecule's random
stream (by default its index in the call), so that:

* ``model.sample(100, seed=0)`` is the first 100 of ``model.sample(1000, seed=0)``;
* ``--batch-size``, ``--chunk-size`` and a halved batch do not change a seeded decode;
* CPU and GPU draw the same variates (the decoded molecules agree wherever their
  logits do).

Prior latents (:func:`prior_latents`) come in fixed blocks of rows, each from its
own numpy generator, for the same reasons.

The hash is Chris Wellons' ``lowbias32`` (a 32-bit integer finalizer with a
measured bias near the best known), evaluated in int64 tensor arithmetic that
never overflows, on any device. The 24 high bits of the result give a uniform
variate in (0, 1), whose negative log is Exp(1).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

_MASK32 = 0xFFFFFFFF
#: Keys of a sampled decode's extra attempts: attempt ``k`` of molecule ``r`` is stream ``r + k * ATTEMPT_STRIDE``.
ATTEMPT_STRIDE = 1 << 40


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for ``x`` in [0, 2**32), in two halves so that no product passes 2**49."""
    hi = ((x >> 16) * c) & 0xFFFF
    return ((hi << 16) + (x & 0xFFFF) * c) & _MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 of each element of an int64 tensor holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _hash32_int(value: int) -> int:
    return int(hash32(torch.tensor([value & _MASK32], dtype=torch.int64))[0])


def random_seed() -> int:
    """A seed drawn from torch's global generator (so ``torch.manual_seed`` still fixes unseeded calls)."""
    return int(torch.randint(0, 2**62, (1,)))


class KeyedNoise:
    """Exp(1) variates for token draws, a pure function of (seed, stream key, step, token).

    ``keys`` (int64, one per row, on the rows' device) numbers each row's stream:
    rows with equal keys draw equal variates.
    """

    def __init__(self, seed: int):
        seed %= 1 << 64
        # Both halves of a 64-bit seed count; the constants keep seed 0 away from hash32's fixed point at 0.
        self._seed_lo = _hash32_int((seed & _MASK32) ^ 0x9E3779B9)
        self._seed_hi = _hash32_int((seed >> 32) ^ 0x85EBCA6B)

    def stream(self, keys: torch.Tensor) -> torch.Tensor:
        """A 32-bit code per key: what :meth:`exponential` needs of each row (hash it once per decode)."""
        keys = keys.to(torch.int64)
        code = hash32((keys & _MASK32) ^ self._seed_lo)
        return hash32(code ^ ((keys >> 32) & _MASK32) ^ self._seed_hi)

    def exponential(self, streams: torch.Tensor, step: int, n_tokens: int) -> torch.Tensor:
        """Exp(1) variates [len(streams), n_tokens] (fp32) for decoding step ``step``."""
        token = torch.arange(n_tokens, dtype=torch.int64, device=streams.device)
        position = hash32(((step * n_tokens + token) & _MASK32) ^ 0xC2B2AE35)
        bits = hash32(streams.unsqueeze(1) ^ position.unsqueeze(0)) >> 8
        # (bits + 0.5) / 2**24 lies strictly inside (0, 1): the log is finite.
        return -torch.log((bits.to(torch.float32) + 0.5) * (1.0 / (1 << 24)))


#: Rows of prior latents drawn from one generator; the draws do not depend on how many are asked for.
PRIOR_BLOCK = 1024


def keyed_rows(
    n: int, dim: int, seed: int, start: int, block_rows: Callable[[np.random.Generator], np.ndarray]
) -> np.ndarray:
    """Rows ``start .. start + n - 1`` [n, dim] (float32) of a seeded sequence made a block of :data:`PRIOR_BLOCK`
    rows at a time.

    ``block_rows(rng)`` makes one whole block from a generator seeded with ``(seed, block)``
    through numpy's ``SeedSequence``, so row ``i`` is the same whatever ``n`` and ``start``
    (a block is always made whole, then sliced: its rows never depend on how many are used).
    """
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0, got {n} and {start}")
    parts = []
    first, last = start // PRIOR_BLOCK, (start + n - 1) // PRIOR_BLOCK
    for block in range(first, last + 1) if n else ():
        rows = block_rows(np.random.default_rng([seed % (1 << 64), block]))
        lo, hi = max(start, block * PRIOR_BLOCK), min(start + n, (block + 1) * PRIOR_BLOCK)
        parts.append(rows[lo - block * PRIOR_BLOCK : hi - block * PRIOR_BLOCK])
    return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.empty((0, dim), dtype=np.float32)


def prior_latents(n: int, dim: int, seed: int, start: int = 0) -> np.ndarray:
    """Rows ``start .. start + n - 1`` of the seed's sequence of N(0, I) latents [n, dim] (float32).

    Each block of :data:`PRIOR_BLOCK` rows comes from its own generator (:func:`keyed_rows`),
    so row ``i`` is the same whatever ``n`` and ``start``.
    """
    return keyed_rows(n, dim, seed, start, lambda rng: standard_block(rng, dim))


def standard_block(rng: np.random.Generator, dim: int) -> np.ndarray:
    """One block of N(0, I) rows [PRIOR_BLOCK, dim] (float32): the first draw of every block's generator."""
    return rng.standard_normal((PRIOR_BLOCK, dim), dtype=np.float32)
