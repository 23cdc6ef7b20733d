"""Parsing SMILES into RDKit molecules: validity and canonical forms.

RDKit's per-molecule log messages are silenced at import: with generated molecules most
strings may be invalid, and one stderr line each would bury everything else. Validity is
reported through return values instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np
from rdkit import Chem, RDLogger

from molvae.chemistry.parallel import map_chunks, resolve_workers

RDLogger.DisableLog("rdApp.*")

__all__ = [
    "MAX_SMILES_LENGTH",
    "as_mol",
    "canonicalize",
    "canonicalize_many",
    "is_valid",
    "map_molecules",
    "to_mol",
    "validity_mask",
]

T = TypeVar("T")

# RDKit's canonical ranking is super-linear in the atom count, so one absurd line could
# stall a whole batch. Longer strings are invalid; drug-like molecules are < 200 characters.
MAX_SMILES_LENGTH = 2_000


def to_mol(smiles: str) -> Chem.Mol | None:
    """Parse and sanitize a SMILES string; ``None`` if it is not a valid molecule.

    Non-strings, empty strings, strings longer than ``MAX_SMILES_LENGTH`` and
    strings that parse but fail sanitization (e.g. a pentavalent carbon) are all invalid.
    """
    if not isinstance(smiles, str) or not smiles or len(smiles) > MAX_SMILES_LENGTH:
        return None
    mol = Chem.MolFromSmiles(smiles)  # sanitizes by default; None on failure
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def as_mol(item: str | Chem.Mol | None) -> Chem.Mol | None:
    """``item`` as a molecule: a non-empty ``Mol`` as it is, a SMILES through :func:`to_mol`.

    Callers that already hold ``Mol`` objects do not pay for a SMILES round trip.
    """
    if isinstance(item, Chem.Mol):
        return item if item.GetNumAtoms() > 0 else None
    return to_mol(item)  # type: ignore[arg-type]


def map_molecules(func: Callable[[Chem.Mol], T], items: Iterable[str | Chem.Mol | None]) -> list[T | None]:
    """``func(mol)`` for each input that is a valid molecule (``as_mol``), ``None`` for the others."""
    out: list[T | None] = []
    for item in items:
        mol = as_mol(item)
        out.append(None if mol is None else func(mol))
    return out


def canonicalize(smiles: str, isomeric: bool = True) -> str | None:
    """RDKit canonical SMILES of ``smiles``, or ``None`` if it is invalid."""
    mol = to_mol(smiles)
    if mol is None:
        return None
    return Chem.MolToSmiles(mol, isomericSmiles=isomeric)


def _canonicalize_chunk(args: tuple[Sequence[str], bool]) -> list[str | None]:
    smiles, isomeric = args
    return [canonicalize(s, isomeric) if isinstance(s, str) else None for s in smiles]


def canonicalize_many(smiles: Sequence[str], n_jobs: int | None = None, isomeric: bool = True) -> list[str | None]:
    """Canonical SMILES (isomeric unless ``isomeric=False``) for each input; ``None`` where invalid or not a string.

    ``n_jobs=1`` runs in-process; ``None`` uses worker processes only for more
    than ``PARALLEL_THRESHOLD`` molecules; ``n_jobs>1`` always uses that
    many workers; ``-1`` means all available cores.
    """
    smiles = list(smiles)
    workers = resolve_workers(n_jobs, len(smiles))
    if workers == 1:
        return _canonicalize_chunk((smiles, isomeric))
    out: list[str | None] = []
    for part in map_chunks(_canonicalize_chunk, smiles, workers, (isomeric,)):
        out.extend(part)
    return out


def is_valid(smiles: str) -> bool:
    """True if ``smiles`` parses and sanitizes."""
    return to_mol(smiles) is not None


def validity_mask(smiles_list: Sequence[str]) -> np.ndarray:
    """Boolean array: which inputs are valid molecules."""
    return np.fromiter((to_mol(s) is not None for s in smiles_list), dtype=bool, count=len(smiles_list))
