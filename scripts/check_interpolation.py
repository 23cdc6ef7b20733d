"""Interpolation acceptance check: 10 drug pairs through a model's latent space.

For each pair the path (12 points, endpoints included) is decoded with the same
settings as ``molvae interpolate``; the script reports the share of valid
intermediate steps and the Spearman correlation between the step index and the
Tanimoto similarity to the start (over the valid steps, endpoints included).
The acceptance bar for the bundled model: >= 80% valid intermediate steps and
rho <= -0.8 for every pair.

    python scripts/check_interpolation.py                      # bundled zinc-smiles, the named pairs
    python scripts/check_interpolation.py --pairs rule         # 10 pairs drawn by a fixed rule
    python scripts/check_interpolation.py --model runs/x --method slerp
    python scripts/check_interpolation.py --endpoints fit      # endpoints fitted to decode back
    python scripts/check_interpolation.py --prior flow         # paths joined in the flow prior's noise

Two pair sets. ``named`` is the list below, chosen by hand before any run; half of
it pairs a drug with a near-copy (caffeine/theophylline differ by one methyl), so
there is little similarity to lose along the path. ``rule`` draws pairs by a fixed
rule instead of by looking at results: drugs from the bundled table that the model
can encode, 150-500 Da, each used once, endpoints with Tanimoto <= 0.3 (so the
similarity to the start has room to fall), in the order of a seeded shuffle.

The last printed line is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.stats import spearmanr

from molvae.chemistry import molecular_weight, morgan_fingerprints, tanimoto_matrix
from molvae.drugs import load_drug_table
from molvae.errors import ConfigError
from molvae.latent import ENDPOINTS, interpolate
from molvae.model import MolVAE

PAIRS = [
    ("aspirin", "ibuprofen"),
    ("ibuprofen", "naproxen"),
    ("caffeine", "theophylline"),
    ("diclofenac", "celecoxib"),
    ("fluoxetine", "sertraline"),
    ("morphine", "codeine"),
    ("lidocaine", "procaine"),
    ("atenolol", "propranolol"),
    ("diazepam", "alprazolam"),
    ("omeprazole", "lansoprazole"),
]


def rule_pairs(model: MolVAE, n: int = 10, seed: int = 0, max_similarity: float = 0.3) -> list[tuple[str, str]]:
    """``n`` pairs of dissimilar, encodable, drug-sized table drugs (see the module docstring)."""
    table = load_drug_table()
    z = model.encode(table["smiles"].tolist(), errors="nan")
    mw = molecular_weight(table["smiles"].tolist())
    keep = ~np.isnan(z).any(axis=1) & (mw >= 150) & (mw <= 500)
    names, smiles = table["name"][keep].tolist(), table["smiles"][keep].tolist()
    fps = morgan_fingerprints(smiles)
    sim = tanimoto_matrix(fps, fps)
    order = np.random.default_rng(seed).permutation(len(names))
    used: set[int] = set()
    pairs = []
    for a_pos, a in enumerate(order):
        if a in used:
            continue
        for b in order[a_pos + 1 :]:
            if b not in used and sim[a, b] <= max_similarity:
                pairs.append((names[a], names[b]))
                used.update((a, b))
                break
        if len(pairs) == n:
            break
    return pairs


def check_pair(
    model: MolVAE,
    start: str,
    end: str,
    steps: int,
    method: str,
    seed: int,
    endpoints: str = "mean",
    unique: int | None = None,
    prior: str = "standard",
) -> dict:
    """One pair's figures: share of valid inner steps, Spearman rho of similarity to the start along the path."""
    df = interpolate(
        model, start, end, steps=steps, method=method, seed=seed, endpoints=endpoints, unique=unique, prior=prior
    )
    inner = df.iloc[1:-1]
    valid = df[df["valid"]]
    rho = spearmanr(valid["step"], valid["tanimoto_start"]).statistic if len(valid) >= 3 else float("nan")
    return {
        "pair": f"{start} -> {end}",
        "valid_inner": float(inner["valid"].mean()),
        "endpoints_reconstructed": bool(df.iloc[0]["tanimoto_start"] == 1.0 and df.iloc[-1]["tanimoto_end"] == 1.0),
        "distinct": int(valid["smiles"].nunique()),
        "points": len(df),
        "spearman_sim_start": float(rho),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="zinc-smiles")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--method", default="linear", choices=["linear", "slerp"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--endpoints",
        default="mean",
        choices=ENDPOINTS,
        help="posterior means, or codes fitted to decode back to the drugs",
    )
    parser.add_argument("--prior", default="standard", help="join the codes in this prior's noise (a flow prior)")
    parser.add_argument("--pairs", default="named", choices=["named", "rule"], help="which pair set (see above)")
    parser.add_argument(
        "--unique",
        type=int,
        default=None,
        help="refine each path (as molvae interpolate --unique) until it holds this many distinct "
        "molecules; rho and the valid share are then over the refined grid",
    )
    args = parser.parse_args()

    model = MolVAE.load(args.model)
    start = time.perf_counter()
    pairs = PAIRS if args.pairs == "named" else rule_pairs(model, seed=args.seed)
    try:
        rows = [
            check_pair(model, a, b, args.steps, args.method, args.seed, args.endpoints, args.unique, args.prior)
            for a, b in pairs
        ]
    except (
        ConfigError
    ) as exc:  # a bad --steps or --unique, as molvae interpolate words it; other errors keep their traceback
        parser.error(str(exc))
    width = max(len(r["pair"]) for r in rows)
    print(f"{'pair':<{width}}  valid(inner)  endpoints  distinct  spearman")
    for r in rows:
        print(
            f"{r['pair']:<{width}}  {r['valid_inner']:>12.2f}  {str(r['endpoints_reconstructed']):>9}  "
            f"{r['distinct']:>8}  {r['spearman_sim_start']:>8.2f}"
        )
    rhos = np.array([r["spearman_sim_start"] for r in rows])
    valid = np.array([r["valid_inner"] for r in rows])
    passed = int(np.sum((valid >= 0.8) & (rhos <= -0.8)))
    print(
        f"{passed}/{len(rows)} pairs meet both bars (>= 0.80 valid inner steps, rho <= -0.8); "
        f"mean valid {valid.mean():.2f}, median rho {np.nanmedian(rhos):.2f}; {time.perf_counter() - start:.0f} s"
    )
    print(
        json.dumps(
            {
                "model": args.model,
                "method": args.method,
                "steps": args.steps,
                "pair_set": args.pairs,
                "endpoints": args.endpoints,
                "seed": args.seed,
                "unique": args.unique,
                "pairs": rows,
                "pairs_passing": passed,
                "mean_valid_inner": float(valid.mean()),
                "median_spearman": float(np.nanmedian(rhos)),
            }
        )
    )


if __name__ == "__main__":
    main()
