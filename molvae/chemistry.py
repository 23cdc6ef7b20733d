"""Chemistry over lists of SMILES: validity, canonical forms, properties, similarity.

Data flows strings -> RDKit ``Mol`` -> numbers. Every public function takes a
sequence of SMILES and returns one result per input, in order; an input that
does not parse and sanitize yields ``None`` (object results) or ``NaN``
(numeric results) instead of raising, so a batch of generated molecules can be
scored in one call and the invalid ones counted afterwards.

RDKit's per-molecule log messages are silenced at import: with generated
molecules most strings may be invalid, and one stderr line each would bury
everything else. Validity is reported through return values instead.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
from rdkit import Chem, DataStructs, RDConfig, RDLogger
from rdkit.Chem import BRICS, QED, Crippen, Descriptors, Lipinski, rdFingerprintGenerator, rdMolDescriptors
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams
from rdkit.Chem.Scaffolds import MurckoScaffold

RDLogger.DisableLog("rdApp.*")

__all__ = [
    "PROPERTIES",
    "PARALLEL_THRESHOLD",
    "aromatic_proportion",
    "brics_fragments",
    "canonicalize",
    "canonicalize_many",
    "esol_logs",
    "hba",
    "hbd",
    "is_valid",
    "lipinski_violations",
    "logp",
    "molecular_weight",
    "morgan_fingerprints",
    "murcko_scaffolds",
    "passes_alerts",
    "penalized_logp",
    "property_table",
    "qed",
    "rotatable_bonds",
    "sa_score",
    "structural_alerts",
    "tanimoto_matrix",
    "tanimoto_one_to_many",
    "tanimoto_similarity",
    "diverse_subset",
    "to_mol",
    "tpsa",
    "validity_mask",
]

# Below this many molecules property_table/canonicalize_many stay in-process when
# n_jobs is None. Measured on 2 cores (all properties, ~250-300 mol/s serial):
# forking the pool costs ~0.06 s and the workers use the same total CPU time as
# a serial run, so with idle cores 2 workers win from ~50 molecules and reach
# ~1.9x by 1000 (4.0 s -> 2.1 s); with the cores busy elsewhere they gain
# nothing but lose little (0.93-0.99x). The threshold is above break-even so the
# small batches of an optimization loop do not fork a process holding a model.
PARALLEL_THRESHOLD = 1_000

# Molecules per task sent to a worker: large enough that pickling and dispatch
# are negligible next to ~3 ms/molecule of QED+SA, small enough to balance load.
_CHUNK_SIZE = 2_000


# --------------------------------------------------------------------------- parsing


# RDKit's canonical ranking is super-linear in the atom count (a 4,000-character chain
# takes about 2 s to canonicalize, a 10,000-character one 12 s), so one absurd line could
# stall a whole batch. Longer strings are invalid; drug-like molecules are < 200 characters.
MAX_SMILES_LENGTH = 2_000


def to_mol(smiles: str) -> Chem.Mol | None:
    """Parse and sanitize a SMILES string; ``None`` if it is not a valid molecule.

    Non-strings, empty strings, strings longer than :data:`MAX_SMILES_LENGTH` and
    strings that parse but fail sanitization (e.g. a pentavalent carbon) are all invalid.
    """
    if not isinstance(smiles, str) or not smiles or len(smiles) > MAX_SMILES_LENGTH:
        return None
    mol = Chem.MolFromSmiles(smiles)  # sanitizes by default; None on failure
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def _as_mol(item: str | Chem.Mol | None) -> Chem.Mol | None:
    # Internal helpers accept already-parsed molecules so callers that hold Mol
    # objects do not pay for a SMILES round trip.
    if isinstance(item, Chem.Mol):
        return item if item.GetNumAtoms() > 0 else None
    return to_mol(item)  # type: ignore[arg-type]


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
    than :data:`PARALLEL_THRESHOLD` molecules; ``n_jobs>1`` always uses that
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


# --------------------------------------------------------------------------- SA score


@functools.cache
def _sascorer() -> ModuleType:
    # sascorer ships as a loose script in RDKit's Contrib directory, not as an
    # importable package; load it by path so sys.path is left untouched.
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    spec = importlib.util.spec_from_file_location("molvae._rdkit_contrib_sascorer", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load RDKit Contrib sascorer from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- per-molecule descriptors

# ZINC250k statistics used by JT-VAE (Jin et al. 2018) to standardise each term
# of penalized logP; reused by most later latent-optimization papers.
_PLOGP_LOGP_MEAN = 2.4570953396190123
_PLOGP_LOGP_STD = 1.434324401111988
_PLOGP_SA_MEAN = -3.0525811293166134  # mean of -SA
_PLOGP_SA_STD = 0.8335207024513095
_PLOGP_CYCLE_MEAN = -0.0485696876403053  # mean of -cycle penalty
_PLOGP_CYCLE_STD = 0.2860212110245455

# Delaney (2004) ESOL coefficients: logS = c0 + c_logp*clogP + c_mw*MW + c_rb*RB + c_ap*AP.
_ESOL_INTERCEPT = 0.16
_ESOL_LOGP = -0.63
_ESOL_MW = -0.0062
_ESOL_RB = 0.066
_ESOL_AP = -0.74


class _MolDescriptors:
    """Lazily computed descriptors of one molecule.

    Derived scores (ESOL, penalized logP, Lipinski) share their inputs with the
    plain properties, so each descriptor is computed at most once per molecule
    however many properties are requested.
    """

    __slots__ = ("mol", "_cache")

    def __init__(self, mol: Chem.Mol):
        self.mol = mol
        self._cache: dict[str, float] = {}

    def get(self, name: str) -> float:
        value = self._cache.get(name)
        if value is None:
            value = float(_MOL_FUNCS[name](self))
            self._cache[name] = value
        return value


def _aromatic_proportion_mol(mol: Chem.Mol) -> float:
    heavy = [a for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    if not heavy:
        return 0.0
    return sum(a.GetIsAromatic() for a in heavy) / len(heavy)


def _ring_penalty_mol(mol: Chem.Mol) -> float:
    # Uses RDKit's SSSR rings; JT-VAE used networkx cycle_basis, which agrees on
    # the largest ring for all but unusual fused/bridged systems.
    sizes = [len(ring) for ring in mol.GetRingInfo().AtomRings()]
    return float(max(max(sizes, default=0) - 6, 0))


def _sa_mol(mol: Chem.Mol) -> float:
    score = _sascorer().calculateScore(mol)
    return math.nan if score is None else float(score)


def _esol_from(d: _MolDescriptors) -> float:
    return (
        _ESOL_INTERCEPT
        + _ESOL_LOGP * d.get("logp")
        + _ESOL_MW * d.get("mw")
        + _ESOL_RB * d.get("rotatable_bonds")
        + _ESOL_AP * d.get("aromatic_proportion")
    )


def _penalized_logp_raw_from(d: _MolDescriptors) -> float:
    return d.get("logp") - d.get("sa") - d.get("ring_penalty")


def _penalized_logp_from(d: _MolDescriptors) -> float:
    return _normalize_penalized_logp(d.get("logp"), d.get("sa"), d.get("ring_penalty"))


def _normalize_penalized_logp(logp_value: float, sa_value: float, ring_penalty: float) -> float:
    return (
        (logp_value - _PLOGP_LOGP_MEAN) / _PLOGP_LOGP_STD
        + (-sa_value - _PLOGP_SA_MEAN) / _PLOGP_SA_STD
        + (-ring_penalty - _PLOGP_CYCLE_MEAN) / _PLOGP_CYCLE_STD
    )


def _lipinski_from(d: _MolDescriptors) -> float:
    return float(
        (d.get("mw") > 500) + (d.get("logp") > 5) + (d.get("hbd") > 5) + (d.get("hba") > 10)
    )


_MOL_FUNCS: dict[str, Callable[[_MolDescriptors], float]] = {
    "mw": lambda d: Descriptors.MolWt(d.mol),
    "logp": lambda d: Crippen.MolLogP(d.mol),
    "tpsa": lambda d: rdMolDescriptors.CalcTPSA(d.mol),
    "hbd": lambda d: Lipinski.NumHDonors(d.mol),
    "hba": lambda d: Lipinski.NumHAcceptors(d.mol),
    "rotatable_bonds": lambda d: rdMolDescriptors.CalcNumRotatableBonds(d.mol),
    "aromatic_proportion": lambda d: _aromatic_proportion_mol(d.mol),
    "qed": lambda d: QED.qed(d.mol),
    "sa": lambda d: _sa_mol(d.mol),
    "ring_penalty": lambda d: _ring_penalty_mol(d.mol),
    "esol": _esol_from,
    "penalized_logp": _penalized_logp_from,
    "penalized_logp_raw": _penalized_logp_raw_from,
    "lipinski_violations": _lipinski_from,
}


def _descriptor_array(smiles_list: Iterable[str | Chem.Mol], name: str) -> np.ndarray:
    values = []
    for item in smiles_list:
        mol = _as_mol(item)
        values.append(math.nan if mol is None else _MolDescriptors(mol).get(name))
    return np.asarray(values, dtype=np.float64)


# --------------------------------------------------------------------------- public properties


def molecular_weight(smiles_list: Sequence[str]) -> np.ndarray:
    """Average molecular weight (g/mol, RDKit ``Descriptors.MolWt``); NaN where invalid."""
    return _descriptor_array(smiles_list, "mw")


def logp(smiles_list: Sequence[str]) -> np.ndarray:
    """Wildman-Crippen logP (RDKit ``Crippen.MolLogP``); NaN where invalid."""
    return _descriptor_array(smiles_list, "logp")


def tpsa(smiles_list: Sequence[str]) -> np.ndarray:
    """Topological polar surface area (Ertl, N and O contributions only); NaN where invalid."""
    return _descriptor_array(smiles_list, "tpsa")


def hbd(smiles_list: Sequence[str]) -> np.ndarray:
    """Hydrogen-bond donors (RDKit ``Lipinski.NumHDonors``); NaN where invalid."""
    return _descriptor_array(smiles_list, "hbd")


def hba(smiles_list: Sequence[str]) -> np.ndarray:
    """Hydrogen-bond acceptors (RDKit ``Lipinski.NumHAcceptors``, not the N+O count); NaN where invalid."""
    return _descriptor_array(smiles_list, "hba")


def rotatable_bonds(smiles_list: Sequence[str]) -> np.ndarray:
    """Rotatable bonds (RDKit strict definition); NaN where invalid."""
    return _descriptor_array(smiles_list, "rotatable_bonds")


def aromatic_proportion(smiles_list: Sequence[str]) -> np.ndarray:
    """Fraction of heavy atoms that are aromatic; NaN where invalid."""
    return _descriptor_array(smiles_list, "aromatic_proportion")


def qed(smiles_list: Sequence[str]) -> np.ndarray:
    """Quantitative estimate of drug-likeness (Bickerton et al. 2012, RDKit ``QED.qed``); NaN where invalid."""
    return _descriptor_array(smiles_list, "qed")


def sa_score(smiles_list: Sequence[str]) -> np.ndarray:
    """Synthetic accessibility, 1 (easy) to 10 (hard), Ertl & Schuffenhauer 2009.

    Uses RDKit Contrib's ``sascorer``. NaN where invalid.
    """
    return _descriptor_array(smiles_list, "sa")


def esol_logs(smiles_list: Sequence[str]) -> np.ndarray:
    """Estimated aqueous solubility log10(S / mol L^-1) by ESOL.

    Delaney, J. Chem. Inf. Comput. Sci. 2004, 44, 1000-1005, eq. for the
    four-parameter model::

        logS = 0.16 - 0.63 clogP - 0.0062 MW + 0.066 RB - 0.74 AP

    with MW the molecular weight, RB rotatable bonds and AP the aromatic
    proportion (aromatic heavy atoms / heavy atoms). Delaney fitted clogP from
    Daylight; here it is RDKit's Crippen logP, so values differ slightly from
    the paper's. NaN where invalid.
    """
    return _descriptor_array(smiles_list, "esol")


def penalized_logp(smiles_list: Sequence[str], normalized: bool = True) -> np.ndarray:
    """Penalized logP: logP minus synthetic accessibility minus a large-ring penalty.

    The ring penalty is ``max(largest ring size - 6, 0)`` and SA is RDKit
    Contrib's ``sascorer``. With ``normalized=True`` (the JT-VAE convention, Jin
    et al. 2018) each term is standardised with the ZINC250k statistics of
    JT-VAE's code::

        (logP - 2.4570953396190123) / 1.434324401111988
        + (-SA - (-3.0525811293166134)) / 0.8335207024513095
        + (-cycle - (-0.0485696876403053)) / 0.2860212110245455

    ``normalized=False`` gives the raw ``logP - SA - cycle`` used by the GA and
    LIMO papers; compare numbers only within one convention. NaN where invalid.
    """
    return _descriptor_array(smiles_list, "penalized_logp" if normalized else "penalized_logp_raw")


def lipinski_violations(smiles_list: Sequence[str]) -> np.ndarray:
    """Number of rule-of-five violations: MW > 500, logP > 5, HBD > 5, HBA > 10.

    Uses the same MW, Crippen logP, HBD and HBA as the functions above. NaN where invalid.
    """
    return _descriptor_array(smiles_list, "lipinski_violations")


PROPERTIES: dict[str, Callable[[Sequence[str]], np.ndarray]] = {
    "mw": molecular_weight,
    "logp": logp,
    "tpsa": tpsa,
    "hbd": hbd,
    "hba": hba,
    "rotatable_bonds": rotatable_bonds,
    "aromatic_proportion": aromatic_proportion,
    "qed": qed,
    "sa": sa_score,
    "esol": esol_logs,
    "penalized_logp": penalized_logp,
    "lipinski_violations": lipinski_violations,
}


# --------------------------------------------------------------------------- property table


def resolve_workers(n_jobs: int | None, n_items: int) -> int:
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n_jobs is None:
        return available if n_items > PARALLEL_THRESHOLD and available > 1 else 1
    if n_jobs == -1:
        return available
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer, -1 or None, got {n_jobs}")
    return n_jobs


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork on Linux: workers start in milliseconds and, unlike spawn/forkserver,
    # do not re-import the caller's __main__, so scripts without an
    # `if __name__ == "__main__"` guard keep working. Workers only run RDKit
    # code, never torch, so threads the parent holds are not touched in them.
    # Elsewhere (macOS, Windows) fork is unsafe or missing: use spawn.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def map_chunks(func: Callable[[Any], Any], items: list[Any], workers: int, extra: tuple = ()) -> list[Any]:
    """Apply ``func((chunk, *extra))`` (or ``func(chunk)`` without extra) over chunks in worker processes."""
    if not items:
        return []
    chunk = max(1, min(_CHUNK_SIZE, math.ceil(len(items) / workers)))
    tasks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    if extra:
        tasks = [(task, *extra) for task in tasks]
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=_mp_context()) as pool:
        return list(pool.map(func, tasks))


def _table_chunk(args: tuple[list[str], tuple[str, ...]]) -> tuple[list[str | None], np.ndarray]:
    smiles, names = args
    canonical: list[str | None] = []
    values = np.full((len(smiles), len(names)), np.nan, dtype=np.float64)
    for i, item in enumerate(smiles):
        mol = to_mol(item)  # parsed once for every property of this molecule
        if mol is None:
            canonical.append(None)
            continue
        canonical.append(Chem.MolToSmiles(mol))
        desc = _MolDescriptors(mol)
        for j, name in enumerate(names):
            values[i, j] = desc.get(name)
    return canonical, values


def property_table(
    smiles_list: Sequence[str],
    properties: Sequence[str] | None = None,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """Table of properties, one row per input SMILES, in input order.

    Columns: ``smiles`` (the input), ``canonical_smiles`` (None where invalid),
    ``valid``, then one float column per requested property name (keys of
    :data:`PROPERTIES`; all of them by default), NaN where invalid. Each
    molecule is parsed once for all properties. ``n_jobs`` as in
    :func:`canonicalize_many`.
    """
    names = tuple(PROPERTIES) if properties is None else tuple(properties)
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        raise ValueError(f"unknown properties {unknown}; known: {sorted(PROPERTIES)}")
    smiles = list(smiles_list)
    workers = resolve_workers(n_jobs, len(smiles))
    if workers == 1:
        canonical, values = _table_chunk((smiles, names))
    else:
        canonical, parts = [], []
        for part_canonical, part_values in map_chunks(_table_chunk, smiles, workers, extra=(names,)):
            canonical.extend(part_canonical)
            parts.append(part_values)
        values = np.concatenate(parts) if parts else np.empty((0, len(names)))
    table = pd.DataFrame(
        {
            "smiles": pd.Series(smiles, dtype=object),
            "canonical_smiles": pd.Series(canonical, dtype=object),
            "valid": np.array([c is not None for c in canonical], dtype=bool),
        }
    )
    for j, name in enumerate(names):
        table[name] = values[:, j]
    return table


# --------------------------------------------------------------------------- fingerprints and similarity


@functools.lru_cache(maxsize=16)
def _morgan_generator(radius: int, n_bits: int) -> Any:
    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def morgan_fingerprints(
    smiles_or_mols: Sequence[str | Chem.Mol], radius: int = 2, n_bits: int = 2048
) -> list[DataStructs.ExplicitBitVect | None]:
    """Morgan (ECFP-like) bit fingerprints; ``None`` where the input is invalid."""
    generator = _morgan_generator(radius, n_bits)
    fps: list[DataStructs.ExplicitBitVect | None] = []
    for item in smiles_or_mols:
        mol = _as_mol(item)
        fps.append(None if mol is None else generator.GetFingerprint(mol))
    return fps


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
    from rdkit.SimDivFilters.rdSimDivPickers import MaxMinPicker

    pool = ([start] if start is not None else []) + list(smiles_list)
    fps = morgan_fingerprints(pool)
    bad = [s for s, fp in zip(pool, fps) if fp is None]
    if bad:
        raise ValueError(f"diverse_subset: invalid SMILES {bad[0]!r}")
    offset = 1 if start is not None else 0
    k = min(int(k), len(pool) - offset)
    if k <= 0:
        return []
    picks = MaxMinPicker().LazyBitVectorPick(fps, len(fps), k + offset, firstPicks=[0] if offset else [],
                                             seed=int(seed))
    return [i - offset for i in picks if i >= offset][:k]


# --------------------------------------------------------------------------- scaffolds and fragments


def murcko_scaffolds(smiles_list: Sequence[str]) -> list[str | None]:
    """Bemis-Murcko scaffold as canonical SMILES; ``""`` for acyclic molecules, ``None`` if invalid."""
    out: list[str | None] = []
    for item in smiles_list:
        mol = _as_mol(item)
        out.append(None if mol is None else Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(mol)))
    return out


def brics_fragments(smiles_list: Sequence[str]) -> list[list[str] | None]:
    """BRICS fragments of each molecule as sorted canonical SMILES, with multiplicity.

    Same definition as MOSES's fragment metric: break every BRICS bond, keeping
    the isotope-labelled dummy atoms (``[1*]`` ...) that mark the cut, and take
    each connected piece; a fragment occurring twice is listed twice. A
    molecule without BRICS bonds is its own single fragment. ``None`` if invalid.
    """
    out: list[list[str] | None] = []
    for item in smiles_list:
        mol = _as_mol(item)
        if mol is None:
            out.append(None)
            continue
        pieces = Chem.GetMolFrags(BRICS.BreakBRICSBonds(mol), asMols=True)
        out.append(sorted(Chem.MolToSmiles(piece) for piece in pieces))
    return out


# --------------------------------------------------------------------------- structural alerts


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
    out: list[list[str] | None] = []
    for item in smiles_list:
        mol = _as_mol(item)
        if mol is None:
            out.append(None)
            continue
        names = [entry.GetDescription() for entry in catalog.GetMatches(mol)]
        out.append(list(dict.fromkeys(names)))
    return out


def passes_alerts(smiles_list: Sequence[str], catalogs: Sequence[str] = ("PAINS", "BRENK")) -> np.ndarray:
    """True for valid molecules that match no alert; invalid molecules do not pass."""
    catalog = _filter_catalog(tuple(catalogs))
    out = np.zeros(len(smiles_list), dtype=bool)
    for i, item in enumerate(smiles_list):
        mol = _as_mol(item)
        out[i] = mol is not None and not catalog.HasMatch(mol)
    return out
