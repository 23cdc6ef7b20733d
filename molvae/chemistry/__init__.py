"""Chemistry over lists of SMILES: validity, canonical forms, properties, similarity.

Data flows strings -> RDKit ``Mol`` -> numbers. Every public function takes a sequence of
SMILES and returns one result per input, in order; an input that does not parse and sanitize
yields ``None`` (object results) or ``NaN`` (numeric results) instead of raising, so a batch of
generated molecules can be scored in one call and the invalid ones counted afterwards.

One idea per module: :mod:`~molvae.chemistry.molecules` (parsing, canonical forms),
:mod:`~molvae.chemistry.properties` (the property functions and their table),
:mod:`~molvae.chemistry.similarity` (fingerprints, Tanimoto, diverse subsets),
:mod:`~molvae.chemistry.fragments` (scaffolds, BRICS), :mod:`~molvae.chemistry.alerts`
(structural alerts), :mod:`~molvae.chemistry.admet` (ADMET-AI's endpoints, an optional extra)
and :mod:`~molvae.chemistry.parallel` (worker processes).
"""

from __future__ import annotations

from molvae.chemistry import admet
from molvae.chemistry.alerts import passes_alerts, structural_alerts
from molvae.chemistry.fragments import brics_fragments, murcko_scaffolds
from molvae.chemistry.molecules import (
    MAX_SMILES_LENGTH,
    canonicalize,
    canonicalize_many,
    is_valid,
    map_molecules,
    to_mol,
    validity_mask,
)
from molvae.chemistry.parallel import PARALLEL_THRESHOLD, map_chunks, resolve_workers
from molvae.chemistry.properties import (
    PROPERTIES,
    Property,
    admet_properties,
    aromatic_proportion,
    default_properties,
    esol_logs,
    hba,
    hbd,
    lipinski_violations,
    logp,
    lookup_property,
    molecular_weight,
    penalized_logp,
    property_table,
    qed,
    require_extra,
    resolve_properties,
    rotatable_bonds,
    sa_score,
    solubility,
    tpsa,
)
from molvae.chemistry.similarity import (
    diverse_subset,
    morgan_fingerprints,
    tanimoto_matrix,
    tanimoto_one_to_many,
    tanimoto_similarity,
)

__all__ = [
    "MAX_SMILES_LENGTH",
    "PARALLEL_THRESHOLD",
    "PROPERTIES",
    "Property",
    "admet",
    "admet_properties",
    "aromatic_proportion",
    "brics_fragments",
    "canonicalize",
    "canonicalize_many",
    "default_properties",
    "diverse_subset",
    "esol_logs",
    "hba",
    "hbd",
    "is_valid",
    "lipinski_violations",
    "logp",
    "lookup_property",
    "map_chunks",
    "map_molecules",
    "molecular_weight",
    "morgan_fingerprints",
    "murcko_scaffolds",
    "passes_alerts",
    "penalized_logp",
    "property_table",
    "qed",
    "require_extra",
    "resolve_properties",
    "resolve_workers",
    "rotatable_bonds",
    "sa_score",
    "solubility",
    "structural_alerts",
    "tanimoto_matrix",
    "tanimoto_one_to_many",
    "tanimoto_similarity",
    "to_mol",
    "tpsa",
    "validity_mask",
]
