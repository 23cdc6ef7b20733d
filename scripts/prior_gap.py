"""How much of a model's sampling quality a prior can buy: decode the codes of real molecules.

A perfect prior would draw from the aggregate posterior, the mixture of q(z|x) over the
training molecules. This draws exactly that (each row: a random training molecule's
posterior mean plus ``scale`` times its posterior noise) for several scales, and the
model's stored priors, decodes each set by sampling and prints validity, uniqueness,
novelty against the MOSES training set and FCD to the MOSES test set. At scale 1 the
decodes are mostly the training molecules themselves (low novelty): the gap between that
row and the priors' rows with the novelty a user wants is what training, not a prior, has
to close.

    python scripts/prior_gap.py --model zinc-smiles --n 5000 --scales 1,1.5,2,3

Last line: one JSON object. FCD over a few thousand molecules reads higher than over
30,000 (the MOSES protocol): compare rows of one run, not with 30k figures.
"""

from __future__ import annotations

import argparse

import numpy as np
from benchlib import emit

from molvae.chemistry import canonicalize_many
from molvae.data import resolve_data_source, sample_smiles
from molvae.metrics import chemnet_activations, frechet_distance, load_smiles_source, reference_stats, train_set
from molvae.model import MolVAE
from molvae.priors import prior_names


def figures(model: MolVAE, z: np.ndarray, known: set[str], ref, seed: int) -> dict[str, float]:
    decoded = model.decode(z, strategy="sample", seed=seed)
    valid = [c for c in canonicalize_many(decoded) if c is not None]
    act = chemnet_activations(valid).astype(np.float64)
    fcd = frechet_distance(act.mean(0), np.cov(act, rowvar=False), ref.fcd_mu, ref.fcd_sigma)
    return {
        "valid": round(len(valid) / len(z), 4),
        "unique": round(len(set(valid)) / max(len(valid), 1), 4),
        "novelty": round(float(np.mean([c not in known for c in set(valid)])), 4),
        "FCD": round(fcd, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="zinc-smiles")
    p.add_argument("--n", type=int, default=5000, help="latents per row")
    p.add_argument("--scales", default="1,1.5,2,3", help="posterior-noise scales of the aggregate-posterior rows")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    model = MolVAE.load(args.model, device="cpu")
    known = train_set(load_smiles_source("moses-train")[0])
    ref = reference_stats(load_smiles_source("moses-test")[0])
    path, column = resolve_data_source("moses-train")
    molecules = sample_smiles(path, args.n, seed=args.seed + 1, column=column)
    mu = model.encode(molecules, errors="nan")
    sampled = model.encode(molecules, sample=True, seed=args.seed + 2, errors="nan")
    keep = np.isfinite(mu).all(axis=1)
    mu, noise = mu[keep], (sampled - mu)[keep]
    rows = {}
    for scale in (float(s) for s in args.scales.split(",")):
        rows[f"aggregate posterior x{scale:g}"] = figures(
            model, (mu + scale * noise).astype(np.float32), known, ref, args.seed
        )
    for name in prior_names(model):
        rows[f"{name} prior"] = figures(model, model.prior(name).sample(len(mu), seed=args.seed), known, ref, args.seed)
    width = max(map(len, rows))
    for label, row in rows.items():
        print(f"{label:<{width}}  " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    emit({"model": args.model, "n": int(len(mu)), "seed": args.seed, "rows": rows})


if __name__ == "__main__":
    main()
