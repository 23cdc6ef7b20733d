"""Morgan fingerprints, Tanimoto similarity and diverse subsets."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator
from rdkit.SimDivFilters.rdSimDivPickers import MaxMinPicker

from molvae.chemistry.molecules import map_molecules

__all__ = ["diverse_subset", "morgan_fingerprints", "tanimoto_matrix", "tanimoto_one_to_many", "tanimoto_similarity"]


@functools.lru_cache(maxsize=16)
def _morgan_generator(radius: int, n_bits: int) -> Any:
    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def morgan_fingerprints(
    smiles_or_mols: Sequence[str | Chem.Mol], radius: int = 2, n_bits: int = 2048
) -> list[DataStructs.ExplicitBitVect | None]:
    """Morgan (ECFP-like) bit fingerprints; ``None`` where the input is invalid."""
    return map_molecules(_morgan_generator(radius, n_bits).GetFingerprint, smiles_or_mols)


def tanimoto_one_to_many(
    query_fp: DataStructs.ExplicitBitVect | None, fps: Sequence[DataStructs.ExplicitBitVect | None]
) -> np.ndarray:
    """Tanimoto similarity of one fingerprint to each of ``fps``; NaN where either is None."""
    out = np.full(len(fps), np.nan, dtype=np.float64)
    if query_fp is None:
        return out
    present = [i for i, fp in enumerate(fps) if fp is not None]
    if present:
        out[present] = DataStructs.BulkTanimotoSimilarity(query_fp, [fps[i] for i in present])
    return out


def tanimoto_matrix(
    fps_a: Sequence[DataStructs.ExplicitBitVect | None], fps_b: Sequence[DataStructs.ExplicitBitVect | None]
) -> np.ndarray:
    """Matrix ``S[i, j]`` = Tanimoto(fps_a[i], fps_b[j]), shape (len(a), len(b)); NaN for None."""
    out = np.full((len(fps_a), len(fps_b)), np.nan, dtype=np.float64)
    for i, fp in enumerate(fps_a):
        out[i] = tanimoto_one_to_many(fp, fps_b)
    return out


def tanimoto_similarity(smiles_a: str, smiles_list: Sequence[str]) -> np.ndarray:
    """Tanimoto similarity (Morgan r=2, 2048 bits) of ``smiles_a`` to each of ``smiles_list``."""
    (query,) = morgan_fingerprints([smiles_a])
    return tanimoto_one_to_many(query, morgan_fingerprints(smiles_list))


def diverse_subset(smiles_list: Sequence[str], k: int, start: str | None = None, seed: int = 0) -> list[int]:
    """Indices of ``k`` mutually dissimilar molecules of ``smiles_list`` (RDKit's MaxMin picker on
    Morgan fingerprints, Tanimoto distance), in pick order.

    With ``start``, the picks also keep away from that molecule (e.g. a lead whose
    near-copies should not fill the subset); it is not among the returned indices.
    All molecules must be valid; ``k`` larger than the list returns every index.
    """
    pool = ([start] if start is not None else []) + list(smiles_list)
    fps = morgan_fingerprints(pool)
    bad = [s for s, fp in zip(pool, fps) if fp is None]
    if bad:
        raise ValueError(f"diverse_subset: invalid SMILES {bad[0]!r}")
    offset = 1 if start is not None else 0
    k = min(int(k), len(pool) - offset)
    if k <= 0:
        return []
    picks = MaxMinPicker().LazyBitVectorPick(
        fps, len(fps), k + offset, firstPicks=[0] if offset else [], seed=int(seed)
    )
    return [i - offset for i in picks if i >= offset][:k]
