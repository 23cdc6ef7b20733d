"""Structural alerts from RDKit's filter catalogs (PAINS, Brenk, ...)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

from molvae.chemistry.molecules import as_mol, map_molecules

__all__ = ["passes_alerts", "structural_alerts"]


@functools.lru_cache(maxsize=8)
def _filter_catalog(catalogs: tuple[str, ...]) -> FilterCatalog:
    params = FilterCatalogParams()
    for name in catalogs:
        try:
            enum_value = getattr(FilterCatalogParams.FilterCatalogs, name.upper())
        except AttributeError:
            known = [n for n in dir(FilterCatalogParams.FilterCatalogs) if n.isupper()]
            raise ValueError(f"unknown alert catalog {name!r}; known: {known}") from None
        params.AddCatalog(enum_value)
    return FilterCatalog(params)


def structural_alerts(
    smiles_list: Sequence[str], catalogs: Sequence[str] = ("PAINS", "BRENK")
) -> list[list[str] | None]:
    """Names of the RDKit FilterCatalog alerts each molecule matches.

    ``catalogs`` are RDKit catalog names (PAINS, PAINS_A/B/C, BRENK, NIH, ZINC,
    CHEMBL_*, ALL). Each alert name appears once, in catalog order; ``[]`` for a
    clean molecule, ``None`` if invalid.
    """
    catalog = _filter_catalog(tuple(catalogs))
    return map_molecules(
        lambda mol: list(dict.fromkeys(entry.GetDescription() for entry in catalog.GetMatches(mol))), smiles_list
    )


def passes_alerts(smiles_list: Sequence[str], catalogs: Sequence[str] = ("PAINS", "BRENK")) -> np.ndarray:
    """True for valid molecules that match no alert; invalid molecules do not pass."""
    catalog = _filter_catalog(tuple(catalogs))
    out = np.zeros(len(smiles_list), dtype=bool)
    for i, item in enumerate(smiles_list):
        mol = as_mol(item)
        out[i] = mol is not None and not catalog.HasMatch(mol)
    return out
