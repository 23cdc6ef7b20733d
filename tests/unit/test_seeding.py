"""molvae.seeding: keyed draws, checked against a plain-integer lowbias32 and for their distribution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from molvae.seeding import PRIOR_BLOCK, KeyedNoise, hash32, prior_latents


def _lowbias32(x: int) -> int:
    """The published C function, in Python integers reduced mod 2**32 (no tensor tricks)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_hash32_is_lowbias32_on_the_whole_32_bit_range() -> None:
    values = [0, 1, 2, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
    values += np.random.default_rng(0).integers(0, 1 << 32, size=2000, dtype=np.int64).tolist()
    got = hash32(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [_lowbias32(v) for v in values]
    assert _lowbias32(1) != 1 and len(set(got)) == len(set(values))  # a bijection: no collisions


def test_keyed_noise_depends_on_seed_key_step_and_token_only() -> None:
    noise = KeyedNoise(7)
    keys = torch.tensor([0, 5, 5, 2**41 + 5, -3])
    streams = noise.stream(keys)
    a = noise.exponential(streams, step=3, n_tokens=30)
    assert a.shape == (5, 30) and a.dtype == torch.float32
    assert torch.equal(a[1], a[2])  # equal keys, equal draws
    assert not torch.equal(a[1], a[3])  # the high bits of a key count
    assert torch.equal(noise.exponential(streams[1:2], 3, 30)[0], a[1])  # whatever else is in the batch
    assert not torch.equal(noise.exponential(streams, 4, 30), a)  # another step
    assert not torch.equal(KeyedNoise(8).exponential(KeyedNoise(8).stream(keys), 3, 30), a)  # another seed
    assert not torch.equal(KeyedNoise(7 + 2**32).exponential(KeyedNoise(7 + 2**32).stream(keys), 3, 30), a)
    assert torch.isfinite(a).all() and (a > 0).all()


def test_keyed_noise_is_exponential_and_uncorrelated() -> None:
    noise = KeyedNoise(0)
    streams = noise.stream(torch.arange(4000))
    x = torch.cat([noise.exponential(streams, t, 50) for t in range(5)]).double()  # 1,000,000 draws
    n = x.numel()
    # Exp(1): mean 1 and variance 1; the standard errors are 0.001 and about 0.003.
    assert abs(x.mean().item() - 1) < 0.005
    assert abs(x.var().item() - 1) < 0.015
    # Tail probabilities P(X > c) = exp(-c), within 5 binomial standard errors.
    for c in (0.1, 1.0, 3.0, 8.0):
        p = math.exp(-c)
        assert abs((x > c).double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n), c
    # Neighbouring tokens, neighbouring rows and neighbouring steps are uncorrelated.
    one = noise.exponential(streams, 0, 50).double()
    two = noise.exponential(streams, 1, 50).double()
    for u, v in ((one[:, :-1], one[:, 1:]), (one[:-1], one[1:]), (one, two)):
        r = np.corrcoef(u.flatten().numpy(), v.flatten().numpy())[0, 1]
        assert abs(r) < 0.01, r


def test_prior_latents_are_the_same_rows_whatever_is_asked_for() -> None:
    whole = prior_latents(3 * PRIOR_BLOCK + 10, 6, seed=11)
    assert whole.shape == (3 * PRIOR_BLOCK + 10, 6) and whole.dtype == np.float32
    assert np.array_equal(prior_latents(5, 6, seed=11), whole[:5])
    assert np.array_equal(
        prior_latents(PRIOR_BLOCK + 3, 6, seed=11, start=PRIOR_BLOCK - 1), whole[PRIOR_BLOCK - 1 : 2 * PRIOR_BLOCK + 2]
    )
    assert prior_latents(0, 6, seed=11).shape == (0, 6)
    assert not np.array_equal(prior_latents(5, 6, seed=12), whole[:5])
    # Blocks are not copies of each other, and the draws are standard normal.
    assert not np.array_equal(whole[:PRIOR_BLOCK], whole[PRIOR_BLOCK : 2 * PRIOR_BLOCK])
    assert abs(whole.mean()) < 0.02 and abs(whole.std() - 1) < 0.02
    with pytest.raises(ValueError, match="must be >= 0"):
        prior_latents(-1, 6, seed=0)
