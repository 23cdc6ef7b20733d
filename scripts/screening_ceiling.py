"""How high random screening of the MOSES training set reaches on a property, without the optimizer.

Computes the property for every MOSES training molecule (or a seeded sample of ``--n``),
prints its maximum, the molecules at the top and the fraction above a few thresholds, then
the best and top-10 mean of ``--budget`` molecules drawn at random without replacement,
over ``--draws`` draws: the distribution that scripts/bench_bo.py's screening baseline
samples with one draw per seed. For QED it shows the ceiling a BO method is asked to beat.
The last printed line is one JSON object with the figures.

    python scripts/screening_ceiling.py --property qed --budget 500            # all 1.58M molecules (19 min on 2 cores)
    python scripts/screening_ceiling.py --property qed --n 100000 --budget 500  # a sample: faster, a lower maximum
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from molvae import chemistry
from molvae.data import moses_file, read_smiles, sample_smiles


def best_of_draws(values: np.ndarray, budget: int, draws: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Best and top-10 mean of ``budget`` values drawn without replacement, once per draw."""
    rng = np.random.default_rng(seed)
    best, top10 = np.empty(draws), np.empty(draws)
    for i in range(draws):
        picked = values[rng.choice(len(values), size=budget, replace=False)]
        top = np.sort(picked)[::-1][:10]
        best[i], top10[i] = top[0], top.mean()
    return best, top10


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--property", default="qed", choices=sorted(chemistry.PROPERTIES))
    p.add_argument("--n", type=int, default=0, help="a seeded sample of this many training molecules (0: all)")
    p.add_argument("--budget", type=int, default=500, help="molecules per screening draw (the oracle budget)")
    p.add_argument("--draws", type=int, default=5000)
    p.add_argument(
        "--thresholds", default="", help="comma-separated values; default: the 99th, 99.9th and 99.99th percentile"
    )
    p.add_argument("--jobs", type=int, default=None, help="worker processes for the property (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.n < 0 or args.budget < 1 or args.draws < 1:
        p.error("--n must be >= 0, --budget and --draws >= 1")

    path = moses_file("train")
    smiles = (
        sample_smiles(path, args.n, seed=args.seed, column="SMILES") if args.n else read_smiles(path, column="SMILES")
    )
    table = chemistry.property_table(smiles, properties=[args.property], n_jobs=args.jobs)
    values = table[args.property].to_numpy(dtype=float)
    ok = np.isfinite(values)
    values, kept = values[ok], table.loc[ok, "smiles"].tolist()
    if len(values) < args.budget:
        p.error(f"{len(values)} molecules with a {args.property} value, fewer than --budget {args.budget}")
    order = np.argsort(-values, kind="stable")
    thresholds = (
        [float(t) for t in args.thresholds.split(",")]
        if args.thresholds
        else [float(np.quantile(values, q)) for q in (0.99, 0.999, 0.9999)]
    )
    best, top10 = best_of_draws(values, args.budget, args.draws, seed=args.seed)

    print(
        f"{args.property} over {len(values):,} MOSES training molecules ({int((~ok).sum())} without a value): "
        f"max {values.max():.5f}, mean {values.mean():.4f}"
    )
    for i in order[:5]:
        print(f"  {values[i]:.5f}  {kept[i]}")
    tail = {
        f"{t:.6g}": {"count": int((values >= t).sum()), "fraction": float((values >= t).mean())} for t in thresholds
    }
    for t, v in tail.items():
        print(f"  >= {t}: {v['count']:,} molecules ({100 * v['fraction']:.4f}%)")
    q = [0.1, 0.5, 0.9]
    print(
        f"best of {args.budget} random molecules, {args.draws} draws: mean {best.mean():.5f} "
        f"(10/50/90th percentile {' / '.join(f'{v:.5f}' for v in np.quantile(best, q))}); "
        f"top-10 mean {top10.mean():.5f} (sd {top10.std():.5f})"
    )
    print(
        json.dumps(
            {
                "property": args.property,
                "molecules": int(len(values)),
                "no_value": int((~ok).sum()),
                "max": float(values.max()),
                "top5": [[kept[i], float(values[i])] for i in order[:5]],
                "tail": tail,
                "budget": args.budget,
                "draws": args.draws,
                "best_mean": float(best.mean()),
                "best_sd": float(best.std()),
                "best_quantiles": dict(zip(("p10", "p50", "p90"), map(float, np.quantile(best, q)))),
                "top10_mean": float(top10.mean()),
                "top10_sd": float(top10.std()),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
