"""``molvae sample``: draw molecules from the prior and write them with validity flags."""

from __future__ import annotations

import argparse

import pandas as pd

from molvae.cli.common import add_model_arguments, load_model, write_table
from molvae.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample molecules from the prior", description=__doc__)
    add_model_arguments(p)
    p.add_argument("--n", type=int, default=1000, help="number of draws")
    p.add_argument("--out", required=True, help="output CSV: one row per draw (smiles, valid, generated)")
    p.add_argument("--strategy", default="sample", choices=["sample", "greedy", "beam"])
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=1024)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from molvae.chemistry import canonicalize

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    model = load_model(args)
    generated = model.sample(args.n, strategy=args.strategy, temperature=args.temperature, seed=args.seed,
                             batch_size=args.batch_size)
    canonical = [canonicalize(s) if s else None for s in generated]
    df = pd.DataFrame({
        "smiles": [c if c is not None else g for c, g in zip(canonical, generated)],
        "valid": [c is not None for c in canonical],
        "generated": generated,
    })
    write_table(df, args.out)
    valid = df.loc[df["valid"], "smiles"]
    uniq = valid.nunique() / len(valid) if len(valid) else 0.0
    print(f"wrote {len(df):,} samples to {args.out}: validity {df['valid'].mean():.3f}, uniqueness {uniq:.3f}")
    return 0
