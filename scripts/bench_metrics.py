"""Benchmark and sanity check of molvae.metrics on real MOSES data.

N random MOSES *training* molecules are evaluated against the MOSES test set:
expect validity 1.0, novelty 0.0 against the training set, IntDiv ~0.857 and an
FCD near its finite-sample floor, which N random *test* molecules measure against
the whole test set (FCD is biased upward at small N: ~0.25 at 5,000). The
samples are random because the MOSES files are ordered: their first lines are
one cluster (the first 10,000 training lines: FCD 5.2). The first evaluation
computes and caches the reference statistics, the second reads the cache;
ChemNet alone is timed too.
The last line printed is a JSON object of the figures.

    python scripts/bench_metrics.py                       # full test set (176k) + full train set (1.58M)
    python scripts/bench_metrics.py --n-ref 20000 --n-train 50000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from molvae import metrics
from molvae.data import moses_file, read_smiles, sample_smiles
from molvae.metrics import chemnet, references


def sample(split: str, n: int | None, seed: int = 0) -> list[str]:
    if n is None:
        return read_smiles(moses_file(split), column="SMILES")
    return sample_smiles(moses_file(split), n, seed=seed, column="SMILES")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="generated molecules (random N of MOSES train)")
    ap.add_argument("--n-ref", type=int, default=None, help="random N of MOSES test as reference (default: all)")
    ap.add_argument("--n-train", type=int, default=None, help="random N of MOSES train for novelty (default: all)")
    ap.add_argument("--n-jobs", type=int, default=None)
    ap.add_argument("--cache-dir", default=None, help="default: a fresh temporary directory (cold first run)")
    args = ap.parse_args()
    os.environ["MOLVAE_CACHE"] = args.cache_dir or tempfile.mkdtemp(prefix="molvae-bench-")

    gen = sample("train", args.n)
    reference = "moses-test" if args.n_ref is None else sample("test", args.n_ref)
    train = "moses-train" if args.n_train is None else sample("train", args.n_train)
    figures: dict[str, float] = {"n": len(gen), "n_ref": args.n_ref or -1, "n_train": args.n_train or -1}

    t = time.perf_counter()
    from molvae.chemistry import canonicalize_many

    canonical = [c for c in canonicalize_many(gen, n_jobs=1) if c is not None]
    act = metrics.chemnet_activations(canonical)
    mu, sigma = chemnet.mu_sigma(act)
    figures["fcd_s"] = time.perf_counter() - t  # canonicalize + ChemNet + mean/cov of the N molecules
    print(f"ChemNet activations for {len(gen):,} molecules: {figures['fcd_s']:.1f} s ({act.shape})", flush=True)

    # the floor: N molecules of the reference set itself against all of it
    ref_all = read_smiles(moses_file("test"), column="SMILES") if reference == "moses-test" else reference
    floor_set = [
        c
        for c in canonicalize_many(
            sample("test", len(gen), seed=1) if reference == "moses-test" else reference[: len(gen)], n_jobs=1
        )
        if c is not None
    ]
    shipped = references._shipped_fcd(ref_all)  # the statistics evaluate() uses for moses-test
    ref_mu, ref_sigma = (
        shipped
        if shipped is not None
        else chemnet.mu_sigma(
            metrics.chemnet_activations([c for c in canonicalize_many(ref_all, n_jobs=1) if c is not None])
        )
    )
    figures["fcd_floor"] = metrics.frechet_distance(
        *chemnet.mu_sigma(metrics.chemnet_activations(floor_set)), ref_mu, ref_sigma
    )
    print(
        f"FCD floor at this size ({len(floor_set):,} random reference molecules vs the whole reference): "
        f"{figures['fcd_floor']:.3f}",
        flush=True,
    )

    t = time.perf_counter()
    first = metrics.evaluate(gen, reference=reference, train=train, n_jobs=args.n_jobs)
    figures["evaluate_s"] = time.perf_counter() - t
    cold = metrics.COMPUTE_CALLS["reference"] == 1
    label = (
        "cold cache: reference stats + train set computed" if cold else f"warm cache in {os.environ['MOLVAE_CACHE']}"
    )
    print(f"evaluate ({label}): {figures['evaluate_s']:.1f} s", flush=True)

    t = time.perf_counter()
    second = metrics.evaluate(gen, reference=reference, train=train, n_jobs=args.n_jobs)
    figures["evaluate_cached_s"] = time.perf_counter() - t
    print(f"evaluate (cached reference stats + train set): {figures['evaluate_cached_s']:.1f} s", flush=True)
    # the second run must read what the first one cached, never recompute it
    assert metrics.COMPUTE_CALLS["reference"] == int(cold), metrics.COMPUTE_CALLS

    print(metrics.format_comparison(second, name=f"MOSES train, random {len(gen)}"))
    same = all((first[k] == second[k]) or (first[k] != first[k] and second[k] != second[k]) for k in first)
    print(f"cached run gives identical values: {same}")
    checks = {
        "valid == 1.0": second["valid"] == 1.0,
        "Novelty == 0.0": second["Novelty"] == 0.0,
        "|IntDiv - 0.857| <= 0.01": abs(second["IntDiv"] - 0.857) <= 0.01,
        "FCD/Test within 0.05 of the floor": abs(second["FCD/Test"] - figures["fcd_floor"]) <= 0.05,
    }
    # informational: below ~30k molecules the floor itself is above the MOSES VAE's 0.099
    print(
        f"  FCD/Test {second['FCD/Test']:.3f} vs the MOSES VAE's 0.099 (floor at this size {figures['fcd_floor']:.3f})"
    )
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    figures.update({k: float(v) for k, v in second.items()})
    figures["sanity_ok"] = all(checks.values())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
