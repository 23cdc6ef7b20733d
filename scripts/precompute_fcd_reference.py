"""Precompute the ChemNet (FCD) statistics of a MOSES reference split and ship them with the package.

Computing ChemNet activations for the 176k-molecule MOSES test set takes about
45 minutes on one CPU core, which every user of ``molvae evaluate`` would otherwise
pay once. The mean and covariance are written to
``molvae/resources/fcd/<key>.npz`` where ``<key>`` is the hash the metrics cache uses
for that exact list of SMILES, so they are only used for the identical reference set.

    python scripts/precompute_fcd_reference.py moses-test

Resumable: activations are saved per chunk under ``--work`` and reused.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from molvae.chemistry import canonicalize_many
from molvae.metrics.chemnet import chemnet_activations, mu_sigma
from molvae.metrics.references import fcd_resource_file, load_smiles_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference", default="moses-test", nargs="?")
    parser.add_argument("--work", default="runs/fcd-work", help="folder for per-chunk activations")
    parser.add_argument("--chunk", type=int, default=8000)
    args = parser.parse_args()

    smiles, _ = load_smiles_source(args.reference)
    canonical = [c for c in canonicalize_many(smiles) if c is not None]
    work = Path(args.work) / args.reference
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    parts = []
    for i in range(0, len(canonical), args.chunk):
        file = work / f"{i:07d}.npy"
        if not file.exists():
            act = chemnet_activations(canonical[i : i + args.chunk])
            np.save(file.with_suffix(".tmp.npy"), act)
            file.with_suffix(".tmp.npy").rename(file)
            done = min(i + args.chunk, len(canonical))
            print(f"{done:,}/{len(canonical):,} molecules, {time.perf_counter() - start:.0f} s", flush=True)
        parts.append(np.load(file))
    mu, sigma = mu_sigma(np.concatenate(parts))
    dest = fcd_resource_file(smiles)
    dest.parent.mkdir(parents=True, exist_ok=True)
    np.savez(dest, fcd_mu=mu, fcd_sigma=sigma, n=np.array([len(canonical)]))
    print(f"wrote {dest} ({len(canonical):,} molecules)")


if __name__ == "__main__":
    main()
