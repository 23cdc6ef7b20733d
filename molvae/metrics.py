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
* ``IntDiv`` = 1 - mean of the full |G|x|G| Tanimoto matrix, diagonal included
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

Reference statistics (ChemNet mean/covariance, fragment and scaffold counts,
packed fingerprints, property arrays) and canonical training sets are cached
under :func:`molvae.data.default_cache_dir`, keyed by a hash of the SMILES.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import io
import json
import logging
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rdkit import Chem
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogEntry, SmartsMatcher
from scipy.stats import wasserstein_distance

from molvae import chemistry
from molvae.checkpoint import atomic_write
from molvae.data import default_cache_dir, read_smiles, resolve_data_source
from molvae.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "ReferenceStats",
    "baselines",
    "evaluate",
    "filters_pass",
    "format_comparison",
    "format_comparisons",
    "fraction_unique",
    "fraction_valid",
    "internal_diversity",
    "load_smiles_source",
    "novelty",
    "reconstruction_rate",
    "reference_stats",
    "snn",
    "tanimoto_bf16",
    "train_set",
]

FP_RADIUS = 2
FP_BITS = 1024
PROPERTY_KEYS = ("logP", "SA", "QED", "MW")
# Bumped when the cached layout or any cached definition changes.
REFERENCE_CACHE_VERSION = 1
TRAIN_CACHE_VERSION = 1
_ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})
# bf16 has an 8-bit significand: integers up to 256 are exact, so an
# intersection count computed in bf16 is exact when one operand has <= 256 bits.
_BF16_EXACT_MAX = 256
_GEN_CHUNK = 2_048
_REF_CHUNK = 16_384

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
            from molvae.errors import InputFileError

            raise InputFileError(f"{source}: no such file (nor a MOSES split: moses-train, moses-test, "
                                 "moses-test_scaffolds)")
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


def _pack_fps(mols: Sequence[Chem.Mol]) -> np.ndarray:
    fps = chemistry.morgan_fingerprints(mols, radius=FP_RADIUS, n_bits=FP_BITS)
    out = np.zeros((len(fps), FP_BITS // 8), dtype=np.uint8)
    for i, fp in enumerate(fps):
        bits = np.zeros(FP_BITS, dtype=np.uint8)
        on = list(fp.GetOnBits())
        bits[on] = 1
        out[i] = np.packbits(bits)
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
    return canonical, valid, _pack_fps(mols), fragments, scaffolds, props, passes


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


# --------------------------------------------------------------------------- Tanimoto


def _unpack(packed: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(packed, axis=1)[:, :FP_BITS])


def _tanimoto_block(a: torch.Tensor, b: torch.Tensor, a_count: torch.Tensor, b_count: torch.Tensor) -> torch.Tensor:
    """Tanimoto of 0/1 rows of ``a`` vs rows of ``b`` as float32 [len(a), len(b)].

    The intersection counts come from one bf16 matrix product (AMX/AVX512-BF16
    on current CPUs). CPU matmul rounds its output to bf16, which is exact for
    integers up to 256; it is used only when every row of ``a`` has at most 256
    bits set (so every intersection is <= 256), else the product runs in fp32.
    """
    if int(a_count.max()) <= _BF16_EXACT_MAX:
        inter = torch.mm(a.to(torch.bfloat16), b.to(torch.bfloat16).T).float()
    else:
        inter = torch.mm(a.float(), b.float().T)
    union = a_count[:, None] + b_count[None, :] - inter
    sim = inter / union
    return torch.where(union > 0, sim, torch.ones_like(sim))  # MOSES: 0/0 -> 1


def tanimoto_bf16(fps_a: np.ndarray, fps_b: np.ndarray) -> np.ndarray:
    """Full Tanimoto matrix of two packed-bit fingerprint arrays (small inputs; for tests/inspection)."""
    a, b = _unpack(fps_a), _unpack(fps_b)
    return _tanimoto_block(a, b, a.sum(1).float(), b.sum(1).float()).double().numpy()


def _agg_tanimoto(gen: np.ndarray, ref: np.ndarray, agg: str, p: int = 1) -> np.ndarray:
    """Per generated row: max (``agg='max'``) or mean of T^p over all reference rows."""
    n = len(gen)
    out = np.zeros(n, dtype=np.float64)
    if n == 0 or len(ref) == 0:
        return np.full(n, np.nan)
    ref_blocks = []
    for j in range(0, len(ref), _REF_CHUNK):
        b = _unpack(ref[j : j + _REF_CHUNK])
        ref_blocks.append((b, b.sum(1).float()))
    for i in range(0, n, _GEN_CHUNK):
        a = _unpack(gen[i : i + _GEN_CHUNK])
        a_count = a.sum(1).float()
        acc = torch.zeros(len(a), dtype=torch.float64)
        for b, b_count in ref_blocks:
            sim = _tanimoto_block(a, b, a_count, b_count)
            if agg == "max":
                acc = torch.maximum(acc, sim.max(1).values.double())
            else:
                acc += (sim if p == 1 else sim**p).sum(1, dtype=torch.float64)
        out[i : i + len(a)] = acc.numpy()
    if agg == "mean":
        out /= len(ref)
    return out


def snn(gen_fps: np.ndarray, ref_fps: np.ndarray) -> float:
    """Mean over generated of the max Tanimoto similarity to the reference set."""
    if len(gen_fps) == 0 or len(ref_fps) == 0:
        return math.nan
    return float(_agg_tanimoto(gen_fps, ref_fps, "max").mean())


def internal_diversity(fps: np.ndarray, p: int = 1) -> float:
    """MOSES IntDiv_p: ``1 - mean_i (mean_j T_ij^p)^(1/p)`` over all pairs, diagonal included."""
    if len(fps) == 0:
        return math.nan
    per_row = _agg_tanimoto(fps, fps, "mean", p=p)
    if p != 1:
        per_row = per_row ** (1.0 / p)
    return float(1.0 - per_row.mean())


# --------------------------------------------------------------------------- simple fractions


def fraction_valid(smiles: Sequence[str]) -> float:
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


# --------------------------------------------------------------------------- FCD


def _fcd_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def chemnet_activations(canonical: Sequence[str], device: str | None = None, batch_size: int = 512) -> np.ndarray:
    """ChemNet penultimate activations [n, 512] (``fcd`` package, in-process, fp32)."""
    import fcd

    if len(canonical) == 0:
        return np.zeros((0, 512), dtype=np.float32)
    model = fcd.load_ref_model()
    with warnings.catch_warnings():
        # fcd stacks its batches with numpy's deprecated `row_stack` alias: about fcd's code, not the molecules.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message="`row_stack` alias is deprecated")
        return fcd.get_predictions(model, list(canonical), batch_size=batch_size, n_jobs=0,
                                   device=_fcd_device(device))


def _mu_sigma(act: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    act = act.astype(np.float64)
    if len(act) < 2:
        return np.full(act.shape[1], np.nan), np.full((act.shape[1], act.shape[1]), np.nan)
    return act.mean(0), np.cov(act, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    import fcd

    if not (np.isfinite(mu1).all() and np.isfinite(mu2).all()):
        return math.nan
    with warnings.catch_warnings():
        # fcd passes sqrtm's `disp` argument, which SciPy deprecates: a warning about fcd's code, not the data.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message="The `disp` argument is deprecated")
        return float(fcd.calculate_frechet_distance(mu1, sigma1, mu2, sigma2))


# --------------------------------------------------------------------------- caches


def fcd_resource_file(smiles: Sequence[str]) -> Path:
    """Where the package ships precomputed ChemNet statistics for exactly this reference list."""
    key = _hash_smiles(list(smiles), f"fcd-v{REFERENCE_CACHE_VERSION}")
    return Path(__file__).resolve().parent / "resources" / "fcd" / f"{key}.npz"


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
    mu, sigma = shipped if shipped is not None else _mu_sigma(chemnet_activations(d.canonical, device))
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
    key = _hash_smiles(smiles, f"reference-v{REFERENCE_CACHE_VERSION}-r{FP_RADIUS}-b{FP_BITS}")
    return (default_cache_dir() if cache_dir is None else Path(cache_dir)) / f"reference-{key}.npz"


def reference_stats(smiles: Sequence[str], n_jobs: int | None = None, device: str | None = None,
                    cache_dir: Path | None = None) -> ReferenceStats:
    """Statistics of a reference set, read from the on-disk cache or computed and cached."""
    smiles = list(smiles)
    file = reference_cache_file(smiles, cache_dir)
    if file.is_file():
        try:
            return _load_reference(file)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable reference cache %s (%s)", file, exc)
    # minutes for the 176k MOSES test molecules on a small CPU: say so rather than sit silent
    log.info("computing the reference set's statistics for the metrics (%s molecules); done once, then read "
             "from %s", f"{len(smiles):,}", file)
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
    log.info("canonicalizing the training set for novelty (%s molecules); done once, then read from %s",
             f"{len(smiles):,}", file)
    canonical = {c for c in chemistry.canonicalize_many(smiles, n_jobs=n_jobs) if c is not None}
    try:
        atomic_write(file, gzip.compress("\n".join(sorted(canonical)).encode("utf-8"), compresslevel=3))
    except OSError as exc:
        log.warning("could not write training-set cache %s (%s)", file, exc)
    return canonical


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
) -> dict[str, float]:
    """All MOSES metrics of ``generated`` against a reference set (and a training set for novelty).

    ``reference``/``train`` are ``moses-test``, ``moses-test_scaffolds``,
    ``moses-train``, a molecule file path, or a list of SMILES; ``train=None``
    skips novelty. Invalid strings count against ``valid`` and are otherwise
    ignored; metrics that cannot be computed (e.g. nothing valid) are NaN.
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
        mu, sigma = _mu_sigma(chemnet_activations(gen.canonical, device))
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
    return results


def reconstruction_rate(model, smiles: Sequence[str]) -> float:
    """Fraction of ``smiles`` whose greedy reconstruction is the same molecule as the model reads it.

    The same canonical SMILES, without stereochemistry for a model that has no stereo
    tokens (:meth:`MolVAE.canonical`): such a model encodes a stereo input as its 2D graph.
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


def active_dimensions(latents: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Which latent dimensions the encoder uses: those whose posterior mean varies across molecules.

    A dimension is active when the variance of its posterior mean over ``latents`` ([N, D]
    posterior means; NaN rows, e.g. molecules ``MolVAE.encode`` skipped, are left out) exceeds
    ``threshold`` (Burda et al. 2016, "Importance Weighted Autoencoders"). A collapsed
    dimension, where q(z|x) equals the prior for every x, has variance near zero. Returns a
    boolean mask of length D.
    """
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"active_units expects posterior means of shape [N, D], got {list(z.shape)}")
    z = z[np.isfinite(z).all(axis=1)]
    if len(z) < 2:
        raise ValueError(f"active_units needs at least 2 encoded molecules, got {len(z)}")
    return z.var(axis=0) > threshold


def active_units(latents: np.ndarray, threshold: float = 0.01) -> int:
    """How many latent dimensions are active (:func:`active_dimensions`)."""
    return int(active_dimensions(latents, threshold).sum())


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
    return pd.read_csv(Path(__file__).resolve().parent / "resources" / "moses_baselines.csv")


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
        extra = [k for k in results
                 if k not in BASELINE_COLUMNS and k.replace("/TestSF", "/Test") not in BASELINE_COLUMNS]
        if extra:
            lines.append("")
            lines.append(f"{name}: " + ", ".join(f"{k}={_format_value(results[k])}" for k in extra))
    return "\n".join(lines)
