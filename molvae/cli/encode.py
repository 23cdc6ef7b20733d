"""``molvae encode``: latent codes (posterior means) of a molecule file, streamed in chunks.

The encoding and the ``.npy`` writer are ``molvae.model.encoding.encode_chunk`` and
``molvae.tables.NpyWriter`` (``molvae.model.encode_to_npy`` from Python); this module
adds the input file, the index table and the progress bar.
"""

from __future__ import annotations

import argparse
import contextlib

import numpy as np
import pandas as pd
from tqdm import tqdm

from molvae.cli.commands import add_command
from molvae.cli.common import add_model_arguments, add_smiles_column_argument, load_model
from molvae.cli.options import (
    add_keep_columns_argument,
    add_limit_arguments,
    keep_columns,
    positive_int,
    with_kept_columns,
)
from molvae.errors import ConfigError, InputFileError, MolvaeError
from molvae.model.encoding import LATENT_DTYPE, encode_chunk
from molvae.readers import count_records, iter_record_chunks
from molvae.tables import NpyWriter, TableWriter, check_output_file, check_table_file

INDEX_COLUMNS = ["row", "smiles", "encoded", "error"]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "encode", description=__doc__)
    add_model_arguments(p)
    p.add_argument(
        "--input",
        "-i",
        required=True,
        help="molecule file (.smi/.txt/.csv/.tsv/.sdf, optionally .gz, or .parquet; - for standard input, its "
        "format told from its first bytes)",
    )
    add_smiles_column_argument(p)
    p.add_argument(
        "--out", "-o", required=True, help="output .npy of shape [N, latent_dim]; NaN rows for skipped molecules"
    )
    p.add_argument(
        "--index",
        default=None,
        metavar="TABLE",
        help="also write a table (.csv, .tsv, .sdf, each optionally .gz, or .parquet) with one row per "
        "input molecule: row (0-based, its row in the .npy), smiles (as given), encoded, error (why "
        "it was skipped), after any --keep-columns",
    )
    add_keep_columns_argument(p)
    p.add_argument("--sample", action="store_true", help="sample z ~ q(z|x) instead of the mean")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the --sample draws; each row's draw depends on the seed and its row number only "
        "(the same output whatever --chunk-size and --batch-size)",
    )
    p.add_argument(
        "--on-error",
        choices=["skip", "raise"],
        default="skip",
        help="skip (NaN row, counted) or stop at the first invalid molecule / unknown token",
    )
    add_limit_arguments(p, chunk_size=20_000, batch_size=1024)
    p.set_defaults(func=run, stdin_input=True)


def run(args: argparse.Namespace) -> int:
    positive_int(args.chunk_size, "--chunk-size")
    positive_int(args.batch_size, "--batch-size")
    out = check_output_file(args.out, inputs=(args.input,))
    if out.suffix.lower() != ".npy":  # the bytes are a NumPy array whatever the name; a .csv name would mislead
        raise MolvaeError(f"{out}: encode writes a NumPy array (np.load reads it); name the output .npy")
    keep = keep_columns(args.keep_columns, INDEX_COLUMNS)
    if keep and args.index is None:
        raise ConfigError(
            "--keep-columns needs --index TABLE: the .npy holds numbers only, the index table "
            "carries the kept columns beside each latent row"
        )
    # never the .npy: not a table name
    index = check_table_file(args.index, inputs=(args.input,)) if args.index is not None else None
    n = count_records(args.input, args.smiles_column, keep)
    model = load_model(args)
    skipped = 0
    # Both outputs go to temporary files, renamed onto their names only once every row is written: a
    # failed run leaves the old files or none. disable=None: no bar when stderr is not a terminal (logs, CI).
    with (
        NpyWriter(out, n, model.config.latent_dim, LATENT_DTYPE) as latents,
        TableWriter(index) if index is not None else contextlib.nullcontext() as index_out,
        tqdm(total=n, unit="mol", desc="encode", dynamic_ncols=True, disable=None) as bar,
    ):
        for chunk, kept in iter_record_chunks(args.input, args.chunk_size, args.smiles_column, keep):
            if latents.rows + len(chunk) > n:
                raise InputFileError(f"{args.input}: the file grew while it was being encoded")
            part = encode_chunk(
                model,
                chunk,
                latents.rows,
                sample=args.sample,
                seed=args.seed,
                batch_size=args.batch_size,
                errors="raise" if args.on_error == "raise" else "nan",
                source=str(args.input),
            )
            latents.write(part.latents)
            skipped += part.n_skipped
            if index_out is not None:
                index_out.write(
                    with_kept_columns(
                        pd.DataFrame(
                            {
                                "row": np.arange(part.first, part.first + len(chunk)),
                                "smiles": chunk,
                                "encoded": part.encoded,
                                "error": part.errors,
                            }
                        ),
                        kept,
                    )
                )
            bar.update(len(chunk))
        if latents.rows != n:
            raise InputFileError(f"{args.input}: the file shrank while it was being encoded")
    print(
        f"encoded {n - skipped:,} of {n:,} molecules to {out} (shape [{n}, {model.config.latent_dim}]); "
        f"skipped {skipped:,} invalid, too long or out-of-vocabulary (NaN rows)"
        + (
            f"; index with the reasons: {index}"
            if index is not None
            else "; --index TABLE lists them with the reasons"
            if skipped
            else ""
        )
    )
    return 0
