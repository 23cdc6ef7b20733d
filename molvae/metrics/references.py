"""What the MOSES metrics need of a set of molecules, computed once and cached on disk.

Each molecule is parsed once (in worker processes for large sets) for its canonical
SMILES, packed fingerprint, BRICS fragments, Murcko scaffold, properties and, for
generated sets, the MOSES filter verdict. A reference set's statistics (ChemNet
mean/covariance included) and a training set's canonical SMILES are cached under
``molvae.datasets.default_cache_dir``, keyed by a hash of the SMILES; the package
ships the ChemNet statistics of the MOSES test set.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import io
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogEntry, SmartsMatcher

from molvae import chemistry
from molvae.checkpoint import atomic_write
from molvae.datasets import default_cache_dir
from molvae.errors import DataError, InputFileError
from molvae.metrics.chemnet import chemnet_activations, mu_sigma
from molvae.metrics.similarity import FP_BITS, FP_RADIUS, pack_fps
from molvae.readers import read_smiles, resolve_data_source

log = logging.getLogger(__name__)

PROPERTY_KEYS = ("logP", "SA", "QED", "MW")
# Bumped when the cached layout or any cached definition changes.
REFERENCE_CACHE_VERSION = 1
TRAIN_CACHE_VERSION = 1
_ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})

# Counts calls of the expensive reference-statistics computation (tests check
# that a cached second evaluation does not increase it).
COMPUTE_CALLS: Counter[str] = Counter()


# --------------------------------------------------------------------------- sources


def load_smiles_source(source: str | Sequence[str]) -> tuple[list[str], str]:
    """SMILES of a named MOSES split (``moses-test`` ...), a file path, or a list; plus a label.

    A file without molecules is an error naming it.
    """
    if isinstance(source, str):
        path, column = resolve_data_source(source)
        if not path.exists():
            raise InputFileError(
                f"{source}: no such file (nor a MOSES split: moses-train, moses-test, moses-test_scaffolds)"
            )
        return read_smiles(path, column=column, allow_empty=False), source
    return list(source), "list"


def _hash_smiles(smiles: Sequence[str], salt: str) -> str:
    h = hashlib.sha256(salt.encode())
    for s in smiles:
        h.update(s.encode("utf-8", "replace"))
        h.update(b"\n")
    return h.hexdigest()[:24]


def _to_bytes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _from_bytes(arr: np.ndarray) -> str:
    return arr.tobytes().decode("utf-8")


# --------------------------------------------------------------------------- per-molecule work


@dataclass
class _Described:
    canonical: list[str]  # valid inputs only, in order
    valid: np.ndarray  # bool, one per input
    fps: np.ndarray  # uint8 packed bits [n_valid, FP_BITS // 8]
    fragments: Counter
    scaffolds: Counter
    props: dict[str, np.ndarray]
    passes: np.ndarray | None  # bool per valid molecule, or None when not asked


@dataclass
class ReferenceStats:
    """What the metrics need of a reference set; cached as one ``.npz``."""

    n: int
    fcd_mu: np.ndarray
    fcd_sigma: np.ndarray
    fps: np.ndarray  # packed bits
    fragments: dict[str, int]
    scaffolds: dict[str, int]
    props: dict[str, np.ndarray]


@functools.cache
def _moses_filter_catalog() -> FilterCatalog:
    """MOSES's MCF + PAINS SMARTS (files of the molsets wheel) as one RDKit catalog."""
    try:
        dist = importlib.metadata.distribution("molsets")
    except importlib.metadata.PackageNotFoundError:
        raise DataError("the MOSES filters need the molsets wheel: pip install --no-deps molsets==0.3.1") from None
    mcf = pd.read_csv(str(dist.locate_file("moses/metrics/mcf.csv")))
    pains = pd.read_csv(str(dist.locate_file("moses/metrics/wehi_pains.csv")), names=["smarts", "names"])
    catalog = FilterCatalog()
    for name, smarts in zip(list(mcf["names"]) + list(pains["names"]), list(mcf["smarts"]) + list(pains["smarts"])):
        smarts = str(smarts).strip()
        if Chem.MolFromSmarts(smarts) is None:  # pragma: no cover - all 502 parse with current RDKit
            raise DataError(f"MOSES filter SMARTS does not parse: {smarts!r}")
        # SmartsMatcher with minCount=1 is HasSubstructMatch, looped in C++.
        catalog.AddEntry(FilterCatalogEntry(str(name).strip(), SmartsMatcher(str(name).strip(), smarts, 1)))
    return catalog


def _passes_filters_mol(mol: Chem.Mol) -> bool:
    ring_info = mol.GetRingInfo()
    if any(len(ring) >= 8 for ring in ring_info.AtomRings()):
        return False
    atoms = list(mol.GetAtoms())
    if any(atom.GetFormalCharge() != 0 for atom in atoms):
        return False
    if any(atom.GetSymbol() not in _ALLOWED_ATOMS for atom in atoms):
        return False
    if _moses_filter_catalog().HasMatch(Chem.AddHs(mol)):
        return False
    smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
    return bool(smiles) and Chem.MolFromSmiles(smiles) is not None


def filters_pass(smiles: Sequence[str]) -> np.ndarray:
    """MOSES filter verdict per input (False for invalid inputs)."""
    out = np.zeros(len(smiles), dtype=bool)
    for i, s in enumerate(smiles):
        mol = chemistry.to_mol(s)
        out[i] = mol is not None and _passes_filters_mol(mol)
    return out


def _describe_chunk(args: tuple[list[str], bool]) -> tuple:
    """Worker: parse each SMILES once and compute everything the metrics need of it."""
    smiles, with_filters = args
    mols, valid = [], np.zeros(len(smiles), dtype=bool)
    for i, s in enumerate(smiles):
        mol = chemistry.to_mol(s)
        if mol is not None:
            mols.append(mol)
            valid[i] = True
    canonical = [Chem.MolToSmiles(m) for m in mols]
    fragments: Counter = Counter()
    for frags in chemistry.brics_fragments(mols):
        fragments.update(frags)
    scaffolds: Counter = Counter()
    for mol, scaf in zip(mols, chemistry.murcko_scaffolds(mols)):
        # A Murcko scaffold keeps every ring, so its ring count is the molecule's.
        if scaf and mol.GetRingInfo().NumRings() >= 2:
            scaffolds[scaf] += 1
    props = {
        "logP": chemistry.logp(mols),
        "SA": chemistry.sa_score(mols),
        "QED": chemistry.qed(mols),
        "MW": chemistry.molecular_weight(mols),
    }
    passes = np.array([_passes_filters_mol(m) for m in mols], dtype=bool) if with_filters else None
    return canonical, valid, pack_fps(mols), fragments, scaffolds, props, passes


def _describe(smiles: Sequence[str], with_filters: bool, n_jobs: int | None) -> _Described:
    smiles = list(smiles)
    workers = chemistry.resolve_workers(n_jobs, len(smiles))
    if workers == 1:
        parts = [_describe_chunk((smiles, with_filters))]
    else:
        parts = chemistry.map_chunks(_describe_chunk, smiles, workers, extra=(with_filters,))
    canonical: list[str] = []
    fragments: Counter = Counter()
    scaffolds: Counter = Counter()
    for part in parts:
        canonical.extend(part[0])
        fragments.update(part[3])
        scaffolds.update(part[4])
    width = FP_BITS // 8
    return _Described(
        canonical=canonical,
        valid=np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=bool),
        fps=np.concatenate([p[2] for p in parts]) if parts else np.zeros((0, width), dtype=np.uint8),
        fragments=fragments,
        scaffolds=scaffolds,
        props={k: np.concatenate([p[5][k] for p in parts]) if parts else np.zeros(0) for k in PROPERTY_KEYS},
        passes=np.concatenate([p[6] for p in parts]) if (parts and with_filters) else None,
    )


# --------------------------------------------------------------------------- caches


def fcd_resource_file(smiles: Sequence[str]) -> Path:
    """Where the package ships precomputed ChemNet statistics for exactly this reference list."""
    key = _hash_smiles(list(smiles), f"fcd-v{REFERENCE_CACHE_VERSION}")
    return Path(__file__).resolve().parents[1] / "resources" / "fcd" / f"{key}.npz"


def _shipped_fcd(smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
    file = fcd_resource_file(smiles)
    if not file.is_file():
        return None
    with np.load(file, allow_pickle=False) as z:
        return z["fcd_mu"], z["fcd_sigma"]


def _compute_reference(smiles: Sequence[str], n_jobs: int | None, device: str | None) -> ReferenceStats:
    COMPUTE_CALLS["reference"] += 1
    d = _describe(smiles, with_filters=False, n_jobs=n_jobs)
    if not d.canonical:
        raise DataError("the reference set has no valid molecule")
    # ChemNet over the 176k MOSES test molecules takes ~45 min on a CPU core: the
    # package ships those statistics (scripts/precompute_fcd_reference.py).
    shipped = _shipped_fcd(smiles)
    mu, sigma = shipped if shipped is not None else mu_sigma(chemnet_activations(d.canonical, device))
    return ReferenceStats(len(d.canonical), mu, sigma, d.fps, dict(d.fragments), dict(d.scaffolds), d.props)


def _save_reference(file: Path, stats: ReferenceStats) -> None:
    buf = io.BytesIO()
    np.savez(
        buf,
        n=np.array([stats.n], dtype=np.int64),
        fcd_mu=stats.fcd_mu,
        fcd_sigma=stats.fcd_sigma,
        fps=stats.fps,
        fragments=_to_bytes(json.dumps(stats.fragments)),
        scaffolds=_to_bytes(json.dumps(stats.scaffolds)),
        **{f"prop_{k}": v for k, v in stats.props.items()},
    )
    atomic_write(file, buf.getvalue())


def _load_reference(file: Path) -> ReferenceStats:
    with np.load(file, allow_pickle=False) as z:
        return ReferenceStats(
            n=int(z["n"][0]),
            fcd_mu=z["fcd_mu"],
            fcd_sigma=z["fcd_sigma"],
            fps=z["fps"],
            fragments=json.loads(_from_bytes(z["fragments"])),
            scaffolds=json.loads(_from_bytes(z["scaffolds"])),
            props={k: z[f"prop_{k}"] for k in PROPERTY_KEYS},
        )


def reference_cache_file(smiles: Sequence[str], cache_dir: Path | None = None) -> Path:
    """Where :func:`reference_stats` caches the statistics of ``smiles``."""
    key = _hash_smiles(smiles, f"reference-v{REFERENCE_CACHE_VERSION}-r{FP_RADIUS}-b{FP_BITS}")
    return (default_cache_dir() if cache_dir is None else Path(cache_dir)) / f"reference-{key}.npz"


def reference_stats(
    smiles: Sequence[str], n_jobs: int | None = None, device: str | None = None, cache_dir: Path | None = None
) -> ReferenceStats:
    """Statistics of a reference set, read from the on-disk cache or computed and cached."""
    smiles = list(smiles)
    file = reference_cache_file(smiles, cache_dir)
    if file.is_file():
        try:
            return _load_reference(file)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable reference cache %s (%s)", file, exc)
    # minutes for the 176k MOSES test molecules on a small CPU: say so rather than sit silent
    log.info(
        "computing the reference set's statistics for the metrics (%s molecules); done once, then read from %s",
        f"{len(smiles):,}",
        file,
    )
    stats = _compute_reference(smiles, n_jobs, device)
    try:
        _save_reference(file, stats)
    except OSError as exc:
        log.warning("could not write reference cache %s (%s)", file, exc)
    return stats


def train_set(smiles: Sequence[str], n_jobs: int | None = None, cache_dir: Path | None = None) -> set[str]:
    """Canonical SMILES of a training set, cached as a gzip text file keyed by a hash of the input."""
    smiles = list(smiles)
    key = _hash_smiles(smiles, f"train-v{TRAIN_CACHE_VERSION}")
    file = (default_cache_dir() if cache_dir is None else Path(cache_dir)) / f"train-{key}.txt.gz"
    if file.is_file():
        try:
            with gzip.open(file, "rt", encoding="utf-8") as fh:
                return {line.rstrip("\n") for line in fh if line.strip()}
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            log.warning("ignoring unreadable training-set cache %s (%s)", file, exc)
    COMPUTE_CALLS["train"] += 1
    log.info(
        "canonicalizing the training set for novelty (%s molecules); done once, then read from %s",
        f"{len(smiles):,}",
        file,
    )
    canonical = {c for c in chemistry.canonicalize_many(smiles, n_jobs=n_jobs) if c is not None}
    try:
        atomic_write(file, gzip.compress("\n".join(sorted(canonical)).encode("utf-8"), compresslevel=3))
    except OSError as exc:
        log.warning("could not write training-set cache %s (%s)", file, exc)
    return canonical
