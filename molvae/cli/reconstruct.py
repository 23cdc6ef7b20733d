"""``molvae reconstruct``: encode then greedily decode molecules; report exact reconstruction.

``exact`` compares canonical SMILES at what the model can spell: a model without
stereo tokens (the bundled MOSES models) reads a molecule as its 2D graph, so a
decode of that graph counts as exact for a stereo input too.
"""

from __future__ import annotations

import argparse

import pandas as pd

from molvae.cli.commands import add_command
from molvae.cli.common import (
    add_model_arguments,
    add_smiles_column_argument,
    count_rows,
    load_model,
    report_stream,
    shown_output,
)
from molvae.cli.options import (
    add_keep_columns_argument,
    add_limit_arguments,
    keep_columns,
    positive_int,
    with_kept_columns,
)
from molvae.readers import count_records, iter_record_chunks

COLUMNS = ["smiles", "reconstruction", "exact", "encoded"]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "reconstruct", description=__doc__)
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
        "--out",
        "-o",
        required=True,
        help="output table (.csv, .tsv, .sdf, each optionally .gz, or .parquet; - for CSV on standard output): "
        "smiles, reconstruction, exact",
    )
    p.add_argument("--strategy", default="greedy", choices=["greedy", "beam", "sample"])
    add_keep_columns_argument(p)
    add_limit_arguments(p, chunk_size=20_000)
    p.set_defaults(func=run, stdin_input=True)


def _rows(inputs: list[str], decoded: list[str | None], stereo: bool) -> pd.DataFrame:
    """One row per input; ``exact`` compares at what the model can spell: the 2D graph unless it has ``stereo``."""
    from molvae.chemistry import canonicalize

    rows = []
    for raw, dec in zip(inputs, decoded):
        canon = canonicalize(raw) if raw else None
        rec = canonicalize(dec) if dec else None
        same = (
            canon is not None
            and rec is not None
            and (canonicalize(rec, isomeric=stereo) == canonicalize(canon, isomeric=stereo))
        )
        rows.append(
            {
                "smiles": canon if canon is not None else raw,
                "reconstruction": (rec if rec is not None else dec) if dec is not None else "",
                "exact": same,
                "encoded": dec is not None,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from molvae.tables import TableWriter, check_table_file

    keep = keep_columns(args.keep_columns, COLUMNS)
    positive_int(args.chunk_size, "--chunk-size")
    out = check_table_file(args.out, inputs=(args.input,), stdout_ok=True)
    n = count_records(args.input, args.smiles_column, keep)
    model = load_model(args)
    n_enc = n_exact = 0
    with TableWriter(out) as table_out, tqdm(total=n, unit="mol", desc="reconstruct", disable=None) as bar:
        for chunk, kept in iter_record_chunks(args.input, args.chunk_size, args.smiles_column, keep):
            df = with_kept_columns(
                _rows(chunk, model.reconstruct(chunk, strategy=args.strategy, errors="nan"), model.has_stereo), kept
            )
            table_out.write(df)
            n_enc += int(df["encoded"].sum())
            n_exact += int((df["encoded"] & df["exact"]).sum())
            bar.update(len(chunk))
    rate = n_exact / n_enc if n_enc else 0.0
    print(
        f"wrote {count_rows(table_out.rows)} to {shown_output(out)}: exact reconstruction {rate:.3f} of {n_enc:,} "
        f"encoded "
        f"({table_out.rows - n_enc:,} could not be encoded: invalid SMILES, too long or unknown tokens)",
        file=report_stream(out),
    )
    return 0
