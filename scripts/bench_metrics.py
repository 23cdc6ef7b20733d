"""Benchmark and sanity check of molvae.metrics on real MOSES data.

N MOSES *training* molecules are evaluated against the MOSES test set: expect
validity 1.0, novelty 0.0 against the training set, IntDiv ~0.857 and an FCD
well below the MOSES VAE's 0.099. The first evaluation computes and caches the
reference statistics, the second reads the cache; FCD alone is timed too.
The last line printed is a JSON object of the figures.

    python scripts/bench_metrics.py                       # full test set (176k) + full train set (1.58M)
    python scripts/bench_metrics.py --n-ref 20000 --n-train 50000   # quicker
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time

from molvae import metrics
from molvae.data import moses_file


def head(split: str, n: int | None) -> list[str]:
    out = []
    with gzip.open(moses_file(split), "rt") as fh:
        next(fh)
        for line in fh:
            out.append(line.strip())
            if n is not None and len(out) >= n:
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="generated molecules (first N of MOSES train)")
    ap.add_argument("--n-ref", type=int, default=None, help="first N of MOSES test as reference (default: all)")
    ap.add_argument("--n-train", type=int, default=None, help="first N of MOSES train for novelty (default: all)")
    ap.add_argument("--n-jobs", type=int, default=None)
    ap.add_argument("--cache-dir", default=None, help="default: a fresh temporary directory (cold first run)")
    args = ap.parse_args()
    os.environ["MOLVAE_CACHE"] = args.cache_dir or tempfile.mkdtemp(prefix="molvae-bench-")

    gen = head("train", args.n)
    reference = "moses-test" if args.n_ref is None else head("test", args.n_ref)
    train = "moses-train" if args.n_train is None else head("train", args.n_train)
    figures: dict[str, float] = {"n": len(gen), "n_ref": args.n_ref or -1, "n_train": args.n_train or -1}

    t = time.perf_counter()
    from molvae.chemistry import canonicalize_many

    canonical = [c for c in canonicalize_many(gen, n_jobs=1) if c is not None]
    act = metrics.chemnet_activations(canonical)
    mu, sigma = metrics._mu_sigma(act)
    figures["fcd_10k_s"] = time.perf_counter() - t  # canonicalize + ChemNet + mean/cov of the N molecules
    print(f"ChemNet activations for {len(gen):,} molecules: {figures['fcd_10k_s']:.1f} s ({act.shape})", flush=True)

    t = time.perf_counter()
    first = metrics.evaluate(gen, reference=reference, train=train, n_jobs=args.n_jobs)
    figures["evaluate_10k_s"] = time.perf_counter() - t
    print(f"evaluate (cold cache: reference stats + train set computed): {figures['evaluate_10k_s']:.1f} s", flush=True)

    t = time.perf_counter()
    second = metrics.evaluate(gen, reference=reference, train=train, n_jobs=args.n_jobs)
    figures["evaluate_10k_cached_s"] = time.perf_counter() - t
    print(f"evaluate (cached reference stats + train set): {figures['evaluate_10k_cached_s']:.1f} s", flush=True)
    assert metrics.COMPUTE_CALLS["reference"] == 1, metrics.COMPUTE_CALLS

    print(metrics.format_comparison(second, name=f"MOSES train[:{len(gen)}]"))
    same = all((first[k] == second[k]) or (first[k] != first[k] and second[k] != second[k]) for k in first)
    print(f"cached run gives identical values: {same}")
    checks = {
        "valid == 1.0": second["valid"] == 1.0,
        "Novelty == 0.0": second["Novelty"] == 0.0,
        "|IntDiv - 0.857| <= 0.01": abs(second["IntDiv"] - 0.857) <= 0.01,
        "FCD/Test < 0.099": second["FCD/Test"] < 0.099,
    }
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    figures.update({k: float(v) for k, v in second.items()})
    figures["sanity_ok"] = all(checks.values())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
