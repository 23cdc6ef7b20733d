"""Fingerprint similarity for the MOSES metrics: packed Morgan bits, Tanimoto, SNN, internal diversity.

Fingerprints are Morgan radius 2, 1024 bits, packed eight to a byte. Tanimoto matrices
are computed block by block as bf16 matrix products (exact where it matters, see
``_tanimoto_block``), so a large reference set is never one dense matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from rdkit import Chem

from molvae import chemistry

FP_RADIUS = 2
FP_BITS = 1024
# bf16 has an 8-bit significand: integers up to 256 are exact, so an
# intersection count computed in bf16 is exact when one operand has <= 256 bits.
_BF16_EXACT_MAX = 256
_GEN_CHUNK = 2_048
_REF_CHUNK = 16_384


def pack_fps(mols: Sequence[Chem.Mol]) -> np.ndarray:
    """Morgan fingerprints (the metrics' radius and size) packed into uint8 rows, 8 bits a byte."""
    fps = chemistry.morgan_fingerprints(mols, radius=FP_RADIUS, n_bits=FP_BITS)
    out = np.zeros((len(fps), FP_BITS // 8), dtype=np.uint8)
    for i, fp in enumerate(fps):
        bits = np.zeros(FP_BITS, dtype=np.uint8)
        on = list(fp.GetOnBits())
        bits[on] = 1
        out[i] = np.packbits(bits)
    return out


def _unpack(packed: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(packed, axis=1)[:, :FP_BITS])


def _tanimoto_block(a: torch.Tensor, b: torch.Tensor, a_count: torch.Tensor, b_count: torch.Tensor) -> torch.Tensor:
    """Tanimoto of 0/1 rows of ``a`` vs rows of ``b`` as float32 [len(a), len(b)].

    The intersection counts come from one bf16 matrix product (AMX/AVX512-BF16
    on current CPUs). CPU matmul rounds its output to bf16, which is exact for
    integers up to 256; it is used only when every row of ``a`` has at most 256
    bits set (so every intersection is <= 256), else the product runs in fp32.
    """
    if int(a_count.max()) <= _BF16_EXACT_MAX:
        inter = torch.mm(a.to(torch.bfloat16), b.to(torch.bfloat16).T).float()
    else:
        inter = torch.mm(a.float(), b.float().T)
    union = a_count[:, None] + b_count[None, :] - inter
    sim = inter / union
    return torch.where(union > 0, sim, torch.ones_like(sim))  # MOSES: 0/0 -> 1


def tanimoto_bf16(fps_a: np.ndarray, fps_b: np.ndarray) -> np.ndarray:
    """Full Tanimoto matrix of two packed-bit fingerprint arrays (small inputs; for tests/inspection)."""
    a, b = _unpack(fps_a), _unpack(fps_b)
    return _tanimoto_block(a, b, a.sum(1).float(), b.sum(1).float()).double().numpy()


def _agg_tanimoto(gen: np.ndarray, ref: np.ndarray, agg: str, p: int = 1) -> np.ndarray:
    """Per generated row: max (``agg='max'``) or mean of T^p over all reference rows."""
    n = len(gen)
    out = np.zeros(n, dtype=np.float64)
    if n == 0 or len(ref) == 0:
        return np.full(n, np.nan)
    ref_blocks = []
    for j in range(0, len(ref), _REF_CHUNK):
        b = _unpack(ref[j : j + _REF_CHUNK])
        ref_blocks.append((b, b.sum(1).float()))
    for i in range(0, n, _GEN_CHUNK):
        a = _unpack(gen[i : i + _GEN_CHUNK])
        a_count = a.sum(1).float()
        acc = torch.zeros(len(a), dtype=torch.float64)
        for b, b_count in ref_blocks:
            sim = _tanimoto_block(a, b, a_count, b_count)
            if agg == "max":
                acc = torch.maximum(acc, sim.max(1).values.double())
            else:
                acc += (sim if p == 1 else sim**p).sum(1, dtype=torch.float64)
        out[i : i + len(a)] = acc.numpy()
    if agg == "mean":
        out /= len(ref)
    return out


def snn(gen_fps: np.ndarray, ref_fps: np.ndarray) -> float:
    """Mean over generated of the max Tanimoto similarity to the reference set."""
    if len(gen_fps) == 0 or len(ref_fps) == 0:
        return math.nan
    return float(_agg_tanimoto(gen_fps, ref_fps, "max").mean())


def internal_diversity(fps: np.ndarray, p: int = 1) -> float:
    """MOSES IntDiv_p: ``1 - mean_i (mean_j T_ij^p)^(1/p)`` over all pairs, diagonal included."""
    if len(fps) == 0:
        return math.nan
    per_row = _agg_tanimoto(fps, fps, "mean", p=p)
    if p != 1:
        per_row = per_row ** (1.0 / p)
    return float(1.0 - per_row.mean())
