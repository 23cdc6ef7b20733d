"""``molvae properties``: write a table of RDKit properties for a file of molecules.

One output row per input line, in order: invalid SMILES and blank lines are
kept, flagged ``valid=False`` with empty (NaN) properties, so the output can be
joined back to the input by row number.
"""

from __future__ import annotations

import argparse
import logging

from molvae import chemistry
from molvae.cli.commands import add_command
from molvae.cli.common import add_smiles_column_argument
from molvae.errors import ConfigError

log = logging.getLogger(__name__)


def _parse_properties(text: str | None) -> list[str]:
    if text is None:
        return list(chemistry.PROPERTIES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in chemistry.PROPERTIES]
    if unknown or not names:
        raise ConfigError(f"unknown properties {unknown or text!r}; choose from: {', '.join(chemistry.PROPERTIES)}")
    return names


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from molvae.cli.common import count_rows, report_stream, shown_output
    from molvae.cli.options import keep_columns, positive_int, with_kept_columns
    from molvae.readers import count_records, iter_record_chunks
    from molvae.tables import TableWriter, check_table_file

    names = _parse_properties(args.properties)
    keep = keep_columns(args.keep_columns, ["smiles", "canonical_smiles", "valid", *names])
    positive_int(args.chunk_size, "--chunk-size")
    out = check_table_file(args.out, inputs=(args.input,), stdout_ok=True)
    n = count_records(args.input, args.smiles_column, keep)
    n_invalid = 0
    # One chunk of molecules in memory at a time, appended to a temporary file renamed at the end.
    with TableWriter(out) as table_out, tqdm(total=n, unit="mol", desc="properties", disable=None) as bar:
        for chunk, kept in iter_record_chunks(args.input, args.chunk_size, args.smiles_column, keep):
            table = with_kept_columns(chemistry.property_table(chunk, properties=names, n_jobs=args.jobs), kept)
            table_out.write(table)
            n_invalid += int((~table["valid"]).sum())
            bar.update(len(chunk))
    print(f"wrote {count_rows(table_out.rows)} ({n_invalid:,} invalid) to {shown_output(out)}", file=report_stream(out))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "properties",
        description=(
            "Write a CSV with one row per input molecule: the input SMILES, its canonical form, "
            "whether it is valid, and the requested properties (empty where invalid)."
        ),
    )
    parser.add_argument(
        "--input",
        "-i",
        required=True,
        help=".smi/.txt/.csv/.tsv/.sdf (optionally .gz) or .parquet; - for standard input, its format told from "
        "its first bytes",
    )
    parser.add_argument(
        "--out",
        "-o",
        required=True,
        help="output table (.csv, .tsv, .sdf, each optionally .gz, or .parquet; - for CSV on standard output)",
    )
    parser.add_argument(
        "--properties",
        default=None,
        help=f"comma-separated subset of: {', '.join(chemistry.PROPERTIES)} (default: all)",
    )
    add_smiles_column_argument(parser)
    from molvae.cli.options import add_keep_columns_argument, add_limit_arguments

    add_keep_columns_argument(parser)
    add_limit_arguments(parser, chunk_size=100_000)
    parser.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        help="worker processes (default: all cores for large inputs; 1 = no workers)",
    )
    parser.set_defaults(func=run, stdin_input=True)
