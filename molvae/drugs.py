"""Bundled table of well-known drugs, so users can type ``aspirin`` instead of a SMILES.

The table lives in ``molvae/resources/drugs.csv`` (columns ``name,synonyms,formula,smiles``;
synonyms separated by ``;``). ``scripts/check_drug_table.py`` verifies every entry
(RDKit-canonical SMILES, molecular formula, no duplicate names).
"""

from __future__ import annotations

import difflib
import functools
import re
from importlib.resources import files
from pathlib import Path

import pandas as pd
from rdkit import Chem, rdBase

from molvae.chemistry import MAX_SMILES_LENGTH
from molvae.errors import InvalidMoleculeError, MolvaeError, shorten

__all__ = ["UnknownDrugError", "list_drugs", "load_drug_table", "lookup_drug", "resolve_molecule"]

_COLUMNS = ["name", "synonyms", "formula", "smiles"]

# Text made only of these characters reads as an attempted drug name, so a miss is
# answered with name suggestions rather than a SMILES parse error.
_NAME_LIKE = re.compile(r"[A-Za-z0-9 \-]+")
# Name-like text made only of organic-subset atoms and ring digits ("C1CC") was meant as a SMILES.
_SMILES_LIKE = re.compile(r"(?:Cl|Br|[BCNOPSFIbcnops0-9])+")


class UnknownDrugError(MolvaeError):
    """A drug name (or synonym) is not in the bundled drug table."""

    def __init__(self, name: str, suggestions: list[str] | None = None, smiles_like: bool = False):
        self.name = name
        self.suggestions = list(suggestions or [])
        # repr escapes newlines/control characters and shorten cuts it, keeping the CLI's error to one line.
        if self.suggestions:
            message = f"unknown drug name {shorten(name)}; did you mean: {', '.join(self.suggestions)}?"
        elif smiles_like:
            # "C1CC" was meant as a SMILES: "pass a SMILES string instead" would mislead.
            message = f"{shorten(name)} is neither a known drug name (no similar name either) nor a valid SMILES"
        else:
            message = f"unknown drug name {shorten(name)} and no similar known name; pass a SMILES string instead"
        super().__init__(message)


def _table_path() -> Path:
    try:
        return Path(str(files("molvae") / "resources" / "drugs.csv"))
    except (NotADirectoryError, TypeError):
        # importlib.resources cannot always resolve a namespace package (no __init__.py)
        # under an editable install; the file sits next to this module either way.
        return Path(__file__).resolve().parent / "resources" / "drugs.csv"


@functools.lru_cache(maxsize=1)
def _read_table() -> pd.DataFrame:
    # keep_default_na=False: empty synonyms must stay "" (not NaN) for splitting.
    table = pd.read_csv(_table_path(), dtype=str, keep_default_na=False)
    missing = [c for c in _COLUMNS if c not in table.columns]
    if missing:
        raise MolvaeError(f"bundled drug table is missing columns: {', '.join(missing)}")
    return table[_COLUMNS]


def load_drug_table() -> pd.DataFrame:
    """Return the bundled drug table (columns ``name, synonyms, formula, smiles``).

    The file is read once; each call gets a copy so callers cannot alter the cached lookup data.
    """
    return _read_table().copy()


def _normalize(text: str) -> str:
    # Users type "Valproic  Acid" or " ASPIRIN\n"; compare on one spelling.
    return " ".join(text.split()).casefold()


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, tuple[str, str]]:
    """Map every normalized name and synonym to (primary name, canonical SMILES)."""
    index: dict[str, tuple[str, str]] = {}
    for row in _read_table().itertuples(index=False):
        keys = [row.name, *(s for s in row.synonyms.split(";") if s.strip())]
        for key in keys:
            index[_normalize(key)] = (row.name, row.smiles)
    return index


def _suggest(name: str) -> list[str]:
    # 0.75 keeps real typos ("asprin" -> aspirin) but drops look-alikes that difflib's
    # default 0.6 lets through ("asprin" -> oxaprozin, apresoline).
    return difflib.get_close_matches(_normalize(name), list(_index()), n=3, cutoff=0.75)


def list_drugs() -> list[str]:
    """Primary names of all bundled drugs, sorted alphabetically."""
    return sorted(_read_table()["name"].tolist(), key=str.casefold)


def lookup_drug(name: str) -> str:
    """Canonical SMILES of a drug given its name or a synonym (case-insensitive).

    Raises :class:`UnknownDrugError` (with close-match suggestions) for unknown names.
    """
    hit = _index().get(_normalize(name))
    if hit is None:
        raise UnknownDrugError(name.strip(), _suggest(name))
    return hit[1]


def _parse_smiles(text: str) -> Chem.Mol | None:
    # RDKit would otherwise accept "CCO ethanol" (text after a space is the molecule's
    # title) and "" (an empty molecule); neither is a SMILES the user meant.
    if not text or any(ch.isspace() for ch in text):
        return None
    with rdBase.BlockLogs():  # a failed parse is an expected outcome here, not log noise
        try:
            mol = Chem.MolFromSmiles(text)
        except Exception:  # RDKit raises (rather than returning None) on a few malformed inputs
            return None
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def resolve_molecule(text: str) -> tuple[str, str]:
    """Turn a drug name or a SMILES into ``(display_name, canonical_smiles)``.

    Known names/synonyms win over SMILES parsing; for a SMILES the display name is the
    (trimmed) input. Raises :class:`UnknownDrugError` for unknown name-like words and
    :class:`~molvae.errors.InvalidMoleculeError` for anything else that does not parse.
    """
    hit = _index().get(_normalize(text))
    if hit is not None:
        return hit
    stripped = text.strip()
    if len(stripped) > MAX_SMILES_LENGTH:
        raise InvalidMoleculeError(
            f"{shorten(stripped)} is longer than {MAX_SMILES_LENGTH:,} characters: "
            "neither a drug name nor a SMILES molvae accepts"
        )
    mol = _parse_smiles(stripped)
    if mol is not None:
        return stripped, Chem.MolToSmiles(mol)
    if _NAME_LIKE.fullmatch(stripped):
        raise UnknownDrugError(stripped, _suggest(stripped), smiles_like=bool(_SMILES_LIKE.fullmatch(stripped)))
    raise InvalidMoleculeError(f"{shorten(stripped)} is neither a known drug name nor a valid SMILES")
