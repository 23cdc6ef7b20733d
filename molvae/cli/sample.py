"""``molvae sample``: draw molecules from the prior and write them with validity flags."""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
import pandas as pd

from molvae.cli.commands import add_command
from molvae.cli.common import (
    add_model_arguments,
    add_prior_argument,
    generated_rows,
    load_model,
    report_stream,
    shown_output,
)
from molvae.cli.options import add_limit_arguments, positive_int
from molvae.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "sample", description=__doc__)
    add_model_arguments(p)
    add_prior_argument(p)
    p.add_argument("--n", type=int, default=1000, help="number of draws")
    p.add_argument(
        "--out",
        "-o",
        required=True,
        help="output table (.csv, .tsv, .sdf, each optionally .gz, or .parquet; - for CSV on standard output): one "
        "row per draw (smiles, valid, generated)",
    )
    p.add_argument("--strategy", default="sample", choices=["sample", "greedy", "beam"])
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="the same molecules for the same seed whatever --batch-size, --chunk-size or device: "
        "--n 100 gives the first 100 of --n 10000",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the decoding step; the first batch waits for the compiler (needs a C++ "
        "compiler; falls back with a warning). On CPU the eager step already runs its gates in "
        "molvae's own kernel and measured as fast (docs/PERFORMANCE.md)",
    )
    add_limit_arguments(p, chunk_size=100_000, batch_size=1024)
    p.set_defaults(func=run)


def _digests(smiles: pd.Series) -> np.ndarray:
    # 8-byte digests instead of the strings: uniqueness over millions of samples in little memory.
    return np.array(
        [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") for s in smiles], dtype=np.uint64
    )


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from molvae.tables import TableWriter, check_table_file

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    positive_int(args.chunk_size, "--chunk-size")
    positive_int(args.batch_size, "--batch-size")
    out = check_table_file(args.out, stdout_ok=True)
    model = load_model(args)
    model.compile_decoder = args.compile
    prior = model.prior(args.prior)  # a bad --prior fails before the output is opened
    n_valid = 0
    digests = []
    pending: list[str] = []

    def flush(table_out: TableWriter, count: int) -> None:
        nonlocal n_valid, pending
        df = generated_rows(pending[:count])
        table_out.write(df)
        valid = df.loc[df["valid"], "smiles"]
        n_valid += len(valid)
        digests.append(_digests(valid))
        pending = pending[count:]

    # Written every --chunk-size molecules, so memory holds one chunk of strings and one block
    # of latents (MolVAE.iter_sample); the molecules do not depend on either (molvae.seeding).
    with TableWriter(out) as table_out, tqdm(total=args.n, unit="mol", desc="sample", disable=None) as bar:
        for batch in model.iter_sample(
            args.n,
            strategy=args.strategy,
            temperature=args.temperature,
            seed=args.seed,
            batch_size=args.batch_size,
            prior=prior,
        ):
            pending.extend(batch)
            bar.update(len(batch))
            while len(pending) >= args.chunk_size:
                flush(table_out, args.chunk_size)
        if pending:
            flush(table_out, len(pending))
    n_unique = len(np.unique(np.concatenate(digests))) if n_valid else 0
    uniq = n_unique / n_valid if n_valid else 0.0
    print(
        f"wrote {args.n:,} samples ({prior.name} prior) to {shown_output(args.out)}: validity "
        f"{n_valid / args.n:.3f}, uniqueness {uniq:.3f}",
        file=report_stream(args.out),
    )
    return 0
