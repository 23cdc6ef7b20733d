"""MOSES distribution-learning metrics (Polykovskiy et al. 2020, "Molecular Sets").

Re-implemented from the metric definitions in MOSES 0.3.1 (``moses/metrics``),
because the ``moses`` package no longer imports on current pandas/RDKit; only
its data files (MCF/PAINS SMARTS, the data splits) are read from the installed
``molsets`` wheel. Conventions follow MOSES's ``get_all_metrics``:

* ``valid``: fraction of inputs that parse and sanitize. Every other metric is
  computed on the valid part only, *with* duplicates, as canonical SMILES.
* ``unique@k``: unique canonical SMILES among the first ``k`` *valid* molecules
  divided by how many were taken (MOSES removes invalid strings before taking
  the first k). With fewer than ``k`` valid molecules, all of them are used
  (MOSES warns and does the same).
* ``IntDiv`` = 1 - mean of the full ``|G|x|G|`` Tanimoto matrix, diagonal included
  (so a set of n distinct molecules never reaches 1; n identical ones give 0).
  ``IntDiv2`` = 1 - mean_i sqrt(mean_j T_ij^2): MOSES takes the root per row
  before averaging, not of the global mean.
* ``SNN``: mean over generated molecules of the max Tanimoto to the reference.
  Fingerprints are Morgan radius 2, 1024 bits; a pair of empty fingerprints
  has similarity 1 (MOSES maps 0/0 to 1).
* ``Frag``/``Scaf``: cosine similarity of BRICS-fragment / Bemis-Murcko
  scaffold count vectors; scaffolds with fewer than 2 rings are ignored
  (MOSES's ``min_rings=2``). NaN when either side has no fragment/scaffold.
* ``Filters``: MCF + PAINS SMARTS (matched on the molecule with explicit Hs),
  no ring of 8 or more atoms, no charged atom, only C N S O F Cl Br H.
* ``Novelty``: fraction of the unique valid generated molecules whose canonical
  SMILES is not in the training set. The training set is canonicalized with
  the installed RDKit (MOSES compared against the raw training strings).
* ``FCD``: Fréchet ChemNet distance with the ``fcd`` package's ChemNet.
* ``logP_W, SA_W, QED_W, MW_W``: 1-D Wasserstein distances of the property
  distributions (MOSES's ``logP``, ``SA``, ``QED``, ``weight``).
* ``Solubility_W`` (not in MOSES; with ``solubility_sample`` and the ``admet`` extra): the same for
  ADMET-AI's aqueous solubility logS, on seeded subsamples (:mod:`molvae.metrics.solubility`).

Reference statistics (ChemNet mean/covariance, fragment and scaffold counts,
packed fingerprints, property arrays) and canonical training sets are cached
under ``molvae.datasets.default_cache_dir``, keyed by a hash of the SMILES.

The work is split by topic: :mod:`molvae.metrics.similarity` (fingerprints, Tanimoto, SNN,
IntDiv), :mod:`molvae.metrics.chemnet` (FCD), :mod:`molvae.metrics.references` (per-molecule
description, MOSES filters, reference and training-set caches). This module assembles
them into :func:`evaluate` and re-exports their public names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance

from molvae import chemistry
from molvae.active_units import active_dimensions, active_units
from molvae.errors import DataError
from molvae.metrics.chemnet import chemnet_activations, frechet_distance, mu_sigma
from molvae.metrics.references import (
    COMPUTE_CALLS,
    PROPERTY_KEYS,
    REFERENCE_CACHE_VERSION,
    TRAIN_CACHE_VERSION,
    ReferenceStats,
    _describe,
    fcd_resource_file,
    filters_pass,
    load_smiles_source,
    reference_cache_file,
    reference_stats,
    train_set,
)
from molvae.metrics.similarity import FP_BITS, FP_RADIUS, internal_diversity, snn, tanimoto_bf16
from molvae.metrics.solubility import solubility_distance

log = logging.getLogger(__name__)

__all__ = [
    "COMPUTE_CALLS",
    "FP_BITS",
    "FP_RADIUS",
    "PROPERTY_KEYS",
    "REFERENCE_CACHE_VERSION",
    "TRAIN_CACHE_VERSION",
    "ReferenceStats",
    "active_dimensions",
    "active_units",
    "baselines",
    "chemnet_activations",
    "evaluate",
    "fcd_resource_file",
    "filters_pass",
    "format_comparison",
    "format_comparisons",
    "fraction_unique",
    "fraction_valid",
    "frechet_distance",
    "internal_diversity",
    "load_smiles_source",
    "novelty",
    "reconstruction_rate",
    "reference_cache_file",
    "reference_stats",
    "snn",
    "tanimoto_bf16",
    "train_set",
]


# --------------------------------------------------------------------------- simple fractions


def fraction_valid(smiles: Sequence[str]) -> float:
    """Fraction of ``smiles`` that RDKit parses and sanitizes."""
    if len(smiles) == 0:
        return math.nan
    return float(chemistry.validity_mask(list(smiles)).mean())


def fraction_unique(canonical_valid: Sequence[str], k: int | None = None) -> float:
    """Unique among the first ``k`` valid canonical SMILES (all of them if fewer than ``k``)."""
    taken = list(canonical_valid if k is None else canonical_valid[:k])
    if k is not None and len(canonical_valid) < k:
        log.warning("unique@%d computed on only %d valid molecules", k, len(canonical_valid))
    return len(set(taken)) / len(taken) if taken else math.nan


def novelty(canonical_valid: Sequence[str], train_canonical: set[str]) -> float:
    """Fraction of the unique canonical SMILES that are not in ``train_canonical``."""
    unique = set(canonical_valid)
    return len(unique - train_canonical) / len(unique) if unique else math.nan


def _cosine(a: dict[str, int], b: dict[str, int]) -> float:
    if not a or not b:
        return math.nan
    keys = sorted(set(a) | set(b))
    va = np.array([a.get(k, 0) for k in keys], dtype=np.float64)
    vb = np.array([b.get(k, 0) for k in keys], dtype=np.float64)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


def _wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return math.nan
    return float(wasserstein_distance(a, b))


# --------------------------------------------------------------------------- public API


def _suffix(reference: str | Sequence[str]) -> str:
    if isinstance(reference, str) and reference.lower() == "moses-test_scaffolds":
        return "TestSF"
    return "Test"


def evaluate(
    generated: Sequence[str],
    reference: str | Sequence[str] = "moses-test",
    train: str | Sequence[str] | None = "moses-train",
    k: Sequence[int] | int = (1000, 10000),
    n_jobs: int | None = None,
    device: str | None = None,
    solubility_sample: int = 0,
) -> dict[str, float]:
    """All MOSES metrics of ``generated`` against a reference set (and a training set for novelty).

    ``reference``/``train`` are ``moses-test``, ``moses-test_scaffolds``,
    ``moses-train``, a molecule file path, or a list of SMILES; ``train=None``
    skips novelty. Invalid strings count against ``valid`` and are otherwise
    ignored; metrics that cannot be computed (e.g. nothing valid) are NaN.
    ``solubility_sample`` > 0 adds ``Solubility_W`` on that many molecules per side
    (needs the ``admet`` extra).
    """
    generated = ["" if s is None else str(s) for s in generated]
    ks = [k] if isinstance(k, int) else list(k)
    tag = _suffix(reference)
    ref_smiles, ref_label = load_smiles_source(reference)
    # The training set before the slow reference statistics, so a bad file fails at once.
    known: set[str] | None = None
    if train is not None:
        train_smiles, train_label = load_smiles_source(train)
        known = train_set(train_smiles, n_jobs=n_jobs)
        if not known:  # novelty against nothing would read 1.0: a number that looks right and is not
            raise DataError(f"{train_label}: the training set has no valid molecule")
    try:
        ref = reference_stats(ref_smiles, n_jobs=n_jobs, device=device)
    except DataError as exc:  # name the set the user gave, not just "the reference set"
        raise DataError(f"{ref_label}: {exc}") from None

    gen = _describe(generated, with_filters=True, n_jobs=n_jobs)
    results: dict[str, float] = {"valid": float(gen.valid.mean()) if len(generated) else math.nan}
    for kk in ks:
        results[f"unique@{kk}"] = fraction_unique(gen.canonical, kk)
    if len(gen.canonical) >= 2:
        mu, sigma = mu_sigma(chemnet_activations(gen.canonical, device))
        results[f"FCD/{tag}"] = frechet_distance(mu, sigma, ref.fcd_mu, ref.fcd_sigma)
    else:
        results[f"FCD/{tag}"] = math.nan
    results[f"SNN/{tag}"] = snn(gen.fps, ref.fps)
    results[f"Frag/{tag}"] = _cosine(dict(gen.fragments), ref.fragments)
    results[f"Scaf/{tag}"] = _cosine(dict(gen.scaffolds), ref.scaffolds)
    results["IntDiv"] = internal_diversity(gen.fps, p=1)
    results["IntDiv2"] = internal_diversity(gen.fps, p=2)
    results["Filters"] = float(gen.passes.mean()) if gen.passes is not None and len(gen.passes) else math.nan
    if known is not None:
        results["Novelty"] = novelty(gen.canonical, known)
    for name in PROPERTY_KEYS:
        results[f"{name}_W"] = _wasserstein(gen.props[name], ref.props[name])
    if solubility_sample > 0:
        results["Solubility_W"] = solubility_distance(gen.canonical, ref_smiles, solubility_sample)
    return results


def reconstruction_rate(model, smiles: Sequence[str]) -> float:
    """Fraction of ``smiles`` whose greedy reconstruction is the same molecule as the model reads it.

    The same canonical SMILES, without stereochemistry for a model that has no stereo
    tokens (:meth:`.MolVAE.canonical`): such a model encodes a stereo input as its 2D graph.
    Inputs that are invalid or cannot be encoded (unknown token) count as failures.
    """
    smiles = list(smiles)
    if not smiles:
        return math.nan
    decoded = model.reconstruct(smiles, strategy="greedy", errors="nan")
    hits = 0
    for original, out in zip(smiles, decoded):
        target = model.canonical(original)
        if target is not None and out and model.canonical(out) == target:
            hits += 1
    return hits / len(smiles)


# --------------------------------------------------------------------------- baselines


# Columns of the published table and the evaluate() keys they correspond to.
BASELINE_COLUMNS = {
    "valid": "valid",
    "unique@10000": "unique@10000",
    "FCD/Test": "FCD/Test",
    "SNN/Test": "SNN/Test",
    "Frag/Test": "Frag/Test",
    "Scaf/Test": "Scaf/Test",
    "IntDiv": "IntDiv",
    "Filters": "Filters",
    "Novelty": "Novelty",
}


def baselines() -> pd.DataFrame:
    """Published MOSES baseline figures (MOSES README, mean of 3 runs), one row per model."""
    # A path next to this module: importlib.resources cannot resolve molvae.resources
    # (a directory without __init__.py) on every Python version.
    return pd.read_csv(Path(__file__).resolve().parents[1] / "resources" / "moses_baselines.csv")


def _format_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return str(value) if isinstance(value, (int, np.integer)) else format(value, ".3f")


def format_comparison(results: dict[str, float], name: str = "this run") -> str:
    """Plain-text table: the published baseline rows and ``results`` as the last row."""
    return format_comparisons({name: results})


def format_comparisons(rows: dict[str, dict[str, float]]) -> str:
    """Plain-text table: the published baseline rows, then one row per entry of ``rows`` (name: results)."""
    table = baselines()
    cols = [c for c in BASELINE_COLUMNS if c in table.columns]
    lines_of = [[str(r["model"])] + [f"{float(r[c]):.3f}" for c in cols] for _, r in table.iterrows()]

    def fmt(results: dict[str, float], key: str) -> str:
        value = results.get(key, results.get(key.replace("/Test", "/TestSF")))
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{value:.3f}"

    for name, results in rows.items():
        lines_of.append([name] + [fmt(results, c) for c in cols])
    header = ["model"] + cols
    widths = [max(len(header[i]), *(len(r[i]) for r in lines_of)) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in lines_of:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))))
    for name, results in rows.items():
        extra = [
            k for k in results if k not in BASELINE_COLUMNS and k.replace("/TestSF", "/Test") not in BASELINE_COLUMNS
        ]
        if extra:
            lines.append("")
            lines.append(f"{name}: " + ", ".join(f"{k}={_format_value(results[k])}" for k in extra))
    return "\n".join(lines)
