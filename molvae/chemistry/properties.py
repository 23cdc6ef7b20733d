"""Molecular properties from RDKit, and the table of them that objectives, plots and the CLI read.

Every property function takes a sequence of SMILES (or ``Mol`` objects) and returns one float
per input, NaN where the input is not a valid molecule. :data:`.PROPERTIES` is the one place a
property is declared: its function, whether higher or lower is better as an objective, the
spread that ``target()`` and ``range()`` objectives divide distances by, and its label and
description for plots and ``--help``. ADMET-AI's endpoints (an optional extra) are properties
named ``admet:<endpoint>`` (:func:`~molvae.chemistry.lookup_property`), described by the table of
:mod:`molvae.chemistry.admet`; ``solubility`` is its aqueous solubility.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import pandas as pd
from rdkit import Chem, RDConfig
from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdMolDescriptors

from molvae.chemistry import admet
from molvae.chemistry.molecules import as_mol, to_mol
from molvae.chemistry.parallel import map_chunks, resolve_workers
from molvae.errors import ConfigError

__all__ = [
    "PROPERTIES",
    "Property",
    "admet_properties",
    "aromatic_proportion",
    "default_properties",
    "esol_logs",
    "hba",
    "hbd",
    "lipinski_violations",
    "logp",
    "lookup_property",
    "molecular_weight",
    "penalized_logp",
    "property_table",
    "require_extra",
    "resolve_properties",
    "qed",
    "rotatable_bonds",
    "sa_score",
    "solubility",
    "tpsa",
]


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
    return float((d.get("mw") > 500) + (d.get("logp") > 5) + (d.get("hbd") > 5) + (d.get("hba") > 10))


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
        mol = as_mol(item)
        values.append(math.nan if mol is None else _MolDescriptors(mol).get(name))
    return np.asarray(values, dtype=np.float64)


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


def solubility(smiles_list: Sequence[str]) -> np.ndarray:
    """Aqueous solubility log10(S / mol L^-1) predicted by ADMET-AI's Chemprop ensemble (``Solubility_AqSolDB``).

    Trained on AqSolDB's measured solubilities (Sorkun et al. 2019); needs the ``admet`` extra
    (:mod:`molvae.chemistry.admet`). NaN where invalid.
    """
    return admet.predict(smiles_list, [admet.SOLUBILITY])[admet.SOLUBILITY]


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


@dataclass(frozen=True)
class Property:
    """One molecular property: its function and what objectives, plots and the CLI need to know of it.

    Calling a ``Property`` calls its function: ``PROPERTIES["qed"](smiles)``.
    """

    name: str
    function: Callable[[Sequence[str]], np.ndarray]
    label: str  # short, for plot axes and table headers
    description: str  # one line, for --help and objective names
    direction: float = 1.0  # +1: higher is better as an objective; -1: lower is better (maximized negated)
    scale: float = 1.0  # typical spread: target() and range() divide distances by it
    units: str = ""
    extra: str = ""  # the pip extra its function needs ("" for none); tables leave it out by default
    endpoint: str = ""  # ADMET-AI endpoint id: property_table scores all of a table's endpoints in one pass

    def __call__(self, smiles_list: Sequence[str]) -> np.ndarray:
        return self.function(smiles_list)

    @property
    def objective_description(self) -> str:
        """What maximizing this property as an objective means."""
        if self.direction == 0:
            return f"{self.description}: no better direction, use it in target() or range()"
        return self.description if self.direction > 0 else f"{self.description}, negated (lower is better)"


def _by_name(*entries: Property) -> dict[str, Property]:
    return {entry.name: entry for entry in entries}


#: Every property molvae computes, in the order tables list them. The scales make "1 unit"
#: comparable across properties in target() and range() (1 logP unit ~ 20 A^2 TPSA ~ 100 Da).
PROPERTIES: dict[str, Property] = _by_name(
    Property("mw", molecular_weight, "MW", "molecular weight", scale=100.0, units="g/mol"),
    Property("logp", logp, "logP", "Crippen logP", units="log units"),
    Property("tpsa", tpsa, "TPSA", "topological polar surface area", scale=20.0, units="A^2"),
    Property("hbd", hbd, "H-bond donors", "H-bond donors"),
    Property("hba", hba, "H-bond acceptors", "H-bond acceptors"),
    Property("rotatable_bonds", rotatable_bonds, "rotatable bonds", "rotatable bonds"),
    Property(
        "aromatic_proportion",
        aromatic_proportion,
        "aromatic proportion",
        "aromatic heavy atoms / heavy atoms",
        scale=0.1,
    ),
    Property("qed", qed, "QED", "quantitative estimate of drug-likeness (0-1)", scale=0.1),
    Property("sa", sa_score, "SA score", "synthetic accessibility (1 easy to 10 hard)", direction=-1.0),
    Property(
        "esol", esol_logs, "ESOL logS", "ESOL aqueous solubility logS (higher = more soluble)", units="log10(mol/L)"
    ),
    Property(
        "solubility",
        solubility,
        "logS (ADMET-AI)",
        "aqueous solubility logS from ADMET-AI's AqSolDB model (higher = more soluble)",
        units="log10(mol/L)",
        extra="admet",
        endpoint=admet.SOLUBILITY,
    ),
    Property("penalized_logp", penalized_logp, "penalized logP", "penalized logP (JT-VAE normalized)"),
    Property(
        "lipinski_violations", lipinski_violations, "Lipinski violations", "rule-of-five violations", direction=-1.0
    ),
)


def default_properties() -> list[str]:
    """The properties tables show by default: those of :data:`.PROPERTIES` that need no extra."""
    return [name for name, prop in PROPERTIES.items() if not prop.extra]


def admet_properties() -> list[str]:
    """Every ADMET-AI endpoint's property name, ``admet:<endpoint>`` (listed without ADMET-AI installed)."""
    return [f"{admet.PREFIX}{key}" for key in admet.DIRECTIONS]


def _endpoint_values(key: str, smiles_list: Sequence[str]) -> np.ndarray:
    return admet.predict(smiles_list, [key])[key]


@functools.cache
def lookup_property(name: str) -> Property | None:
    """The property called ``name``: an entry of :data:`.PROPERTIES` or ``admet:<endpoint>``; None if none is.

    An ADMET-AI endpoint's label, units and description come from the installed package's metadata:
    without it, a known endpoint raises :class:`~molvae.errors.MissingExtraError`.
    """
    if name in PROPERTIES:
        return PROPERTIES[name]
    if not name.lower().startswith(admet.PREFIX):
        return None
    try:
        e = admet.endpoint(name[len(admet.PREFIX) :].strip())
    except KeyError:
        return None
    return Property(
        f"{admet.PREFIX}{e.id}",
        functools.partial(_endpoint_values, e.id),
        f"{e.name}, {e.units}",
        e.description,
        direction=e.direction,
        scale=e.scale,
        units=e.units,
        extra="admet",
        endpoint=e.id,
    )


def require_extra(prop: Property) -> None:
    """Raise :class:`~molvae.errors.MissingExtraError` (with how to install it) if ``prop``'s extra is missing."""
    if prop.extra == "admet" and not admet.available():
        raise admet.missing(prop.name)


def resolve_properties(names: Sequence[str]) -> list[Property]:
    """The properties called ``names`` (:func:`.lookup_property`); a one-line error naming the unknown ones."""
    found = {name: lookup_property(name) for name in names}
    unknown = [name for name, prop in found.items() if prop is None]
    if unknown:
        raise ConfigError(
            f"unknown properties {unknown}; known: {', '.join(PROPERTIES)}, {admet.PREFIX}<endpoint> "
            f"(one of {', '.join(admet.DIRECTIONS)})"
        )
    return [found[name] for name in names]  # type: ignore[misc]


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
    smiles_list: Sequence[str], properties: Sequence[str] | None = None, n_jobs: int | None = None
) -> pd.DataFrame:
    """Table of properties, one row per input SMILES, in input order.

    Columns: ``smiles`` (the input), ``canonical_smiles`` (None where invalid),
    ``valid``, then one float column per requested property name (:func:`~molvae.chemistry.lookup_property`;
    by default :func:`default_properties`), NaN where invalid. Each molecule is parsed once
    for all RDKit properties, and ADMET-AI scores all requested endpoints in one pass.
    ``n_jobs`` as in :func:`canonicalize_many`.
    """
    props = resolve_properties(default_properties() if properties is None else list(properties))
    names = tuple(p.name for p in props if not p.endpoint)
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
    if any(p.endpoint for p in props):
        predicted = admet.predict(smiles, list(dict.fromkeys(p.endpoint for p in props if p.endpoint)))
        for p in props:
            if p.endpoint:
                table[p.name] = predicted[p.endpoint]
    return table[[*table.columns[:3], *(p.name for p in props)]]
