"""Scaffolds and fragments: Bemis-Murcko scaffolds and BRICS pieces."""

from __future__ import annotations

from collections.abc import Sequence

from rdkit import Chem
from rdkit.Chem import BRICS
from rdkit.Chem.Scaffolds import MurckoScaffold

from molvae.chemistry.molecules import map_molecules

__all__ = ["brics_fragments", "murcko_scaffolds"]


def murcko_scaffolds(smiles_list: Sequence[str]) -> list[str | None]:
    """Bemis-Murcko scaffold as canonical SMILES; ``""`` for acyclic molecules, ``None`` if invalid."""
    return map_molecules(lambda mol: Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(mol)), smiles_list)


def brics_fragments(smiles_list: Sequence[str]) -> list[list[str] | None]:
    """BRICS fragments of each molecule as sorted canonical SMILES, with multiplicity.

    Same definition as MOSES's fragment metric: break every BRICS bond, keeping
    the isotope-labelled dummy atoms (``[1*]`` ...) that mark the cut, and take
    each connected piece; a fragment occurring twice is listed twice. A
    molecule without BRICS bonds is its own single fragment. ``None`` if invalid.
    """
    return map_molecules(_brics_pieces, smiles_list)


def _brics_pieces(mol: Chem.Mol) -> list[str]:
    pieces = Chem.GetMolFrags(BRICS.BreakBRICSBonds(mol), asMols=True)
    return sorted(Chem.MolToSmiles(piece) for piece in pieces)
