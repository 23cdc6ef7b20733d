"""ADMET-AI solubility of generated molecules against a reference set: a Wasserstein distance, like the
MOSES property distances, when the ``admet`` extra is installed.

ADMET-AI scores tens of molecules per second on a CPU where RDKit descriptors score thousands, so
each side is a seeded random subsample of at most ``sample`` molecules, and the reference's values
are cached on disk (under ``molvae.datasets.default_cache_dir``, keyed by a hash of the
subsample and the ADMET-AI version) like the other reference statistics.
"""

from __future__ import annotations

import importlib.metadata
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import wasserstein_distance

from molvae import chemistry
from molvae.checkpoint import atomic_write
from molvae.datasets import default_cache_dir
from molvae.metrics.references import _hash_smiles

__all__ = ["SAMPLE", "reference_solubility", "solubility_distance", "subsample"]

log = logging.getLogger(__name__)

#: Molecules per side: the distance's estimate, not the model, limits its precision beyond this.
SAMPLE = 1000


def subsample(smiles: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """At most ``n`` of ``smiles``, drawn at random (seeded) and kept in their order."""
    smiles = list(smiles)
    if len(smiles) <= n:
        return smiles
    picked = np.sort(np.random.default_rng(seed).choice(len(smiles), size=n, replace=False))
    return [smiles[i] for i in picked]


def _cache_file(smiles: Sequence[str], cache_dir: Path | None) -> Path:
    version = importlib.metadata.version("admet-ai")
    key = _hash_smiles(smiles, f"admet-solubility-{version}")
    return (default_cache_dir() if cache_dir is None else Path(cache_dir)) / f"solubility-{key}.npy"


def reference_solubility(smiles: Sequence[str], sample: int = SAMPLE, cache_dir: Path | None = None) -> np.ndarray:
    """ADMET-AI logS of a subsample of a reference set (NaN where invalid), read from the cache or computed."""
    picked = subsample(smiles, sample)
    file = _cache_file(picked, cache_dir)
    if file.is_file():
        try:
            return np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable solubility cache %s (%s)", file, exc)
    log.info("scoring %d reference molecules with ADMET-AI; done once, then read from %s", len(picked), file)
    values = chemistry.solubility(picked)
    buf = io.BytesIO()
    np.save(buf, values, allow_pickle=False)
    try:
        atomic_write(file, buf.getvalue())
    except OSError as exc:
        log.warning("could not write solubility cache %s (%s)", file, exc)
    return values


def solubility_distance(generated: Sequence[str], reference: Sequence[str], sample: int = SAMPLE) -> float:
    """Wasserstein distance between ADMET-AI logS of (subsamples of) ``generated`` and ``reference``; NaN if
    either has no valid molecule."""
    gen = chemistry.solubility(subsample(generated, sample))
    ref = reference_solubility(reference, sample)
    gen, ref = gen[np.isfinite(gen)], ref[np.isfinite(ref)]
    if len(gen) == 0 or len(ref) == 0:
        return math.nan
    return float(wasserstein_distance(gen, ref))
