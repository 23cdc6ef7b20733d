"""Time molvae.chemistry.property_table on MOSES training molecules.

Usage: python scripts/bench_properties.py --n 100000 [--jobs 2] [--properties mw,qed]

Runs the table serially (n_jobs=1) and with worker processes (n_jobs=--jobs),
checks the two agree, and prints molecules per second. The last printed line
is a JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import pandas as pd

from molvae import chemistry
from molvae.data import moses_file, read_smiles
from molvae.errors import MolvaeError


def time_table(smiles: list[str], properties: list[str] | None, n_jobs: int) -> tuple[float, pd.DataFrame]:
    start = time.perf_counter()
    table = chemistry.property_table(smiles, properties=properties, n_jobs=n_jobs)
    return time.perf_counter() - start, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="number of MOSES training molecules")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="workers for the parallel run")
    parser.add_argument("--properties", default=None, help="comma-separated subset (default: all that need no extra)")
    parser.add_argument("--skip-serial", action="store_true", help="only time the parallel run")
    args = parser.parse_args(argv)
    if args.n < 1 or args.jobs < 1:
        parser.error("--n and --jobs must be >= 1")

    properties = args.properties.split(",") if args.properties else None
    unknown = sorted(set(properties or ()) - set(chemistry.PROPERTIES))
    if unknown:
        parser.error(f"unknown properties {unknown}; known: {', '.join(sorted(chemistry.PROPERTIES))}")
    try:
        # The first --n molecules of the file, not a sample, so every run times the same ones.
        smiles = read_smiles(moses_file("train"), column="SMILES", limit=args.n)
    except MolvaeError as exc:
        parser.exit(1, f"bench_properties: {exc}\n")
    n = len(smiles)
    # Warm-up outside the timings: first calls load SA fragment scores and
    # Crippen/QED parameter tables.
    chemistry.property_table(smiles[:20], properties=properties, n_jobs=1)

    figures: dict[str, object] = {
        "n": n,
        "properties": properties or chemistry.default_properties(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    serial_table = None
    if not args.skip_serial:
        seconds, serial_table = time_table(smiles, properties, n_jobs=1)
        figures["serial_s"] = round(seconds, 2)
        figures["serial_mol_per_s"] = round(n / seconds, 1)
        print(f"serial   (n_jobs=1): {n} molecules in {seconds:.1f} s = {n / seconds:.0f} mol/s", flush=True)

    seconds, parallel_table = time_table(smiles, properties, n_jobs=args.jobs)
    figures["parallel_jobs"] = args.jobs
    figures["parallel_s"] = round(seconds, 2)
    figures["property_table_mol_per_s"] = round(n / seconds, 1)
    print(f"parallel (n_jobs={args.jobs}): {n} molecules in {seconds:.1f} s = {n / seconds:.0f} mol/s", flush=True)

    if serial_table is not None:
        pd.testing.assert_frame_equal(parallel_table, serial_table)
        figures["speedup"] = round(figures["serial_s"] / figures["parallel_s"], 2)  # type: ignore[operator]
        print(f"speed-up: {figures['speedup']}x; serial and parallel tables identical")
    figures["n_invalid"] = int((~parallel_table["valid"]).sum())
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
