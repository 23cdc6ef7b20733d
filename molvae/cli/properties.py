"""``molvae properties``: write a table of RDKit properties (and ADMET-AI's endpoints) for a file of molecules.

One output row per input line, in order: invalid SMILES and blank lines are
kept, flagged ``valid=False`` with empty (NaN) properties, so the output can be
joined back to the input by row number. ``--admet`` adds a column per ADMET-AI
endpoint, ``admet:<endpoint>`` (the spelling ``--objective`` and ``--init`` read).
"""

from __future__ import annotations

import argparse
import logging

from molvae import chemistry
from molvae.cli.commands import add_command
from molvae.cli.common import add_smiles_column_argument
from molvae.errors import ConfigError

log = logging.getLogger(__name__)


def _parse_properties(text: str | None, with_admet: bool) -> list[str]:
    """The columns asked for: ``--properties`` (default: those needing no extra), then every endpoint with --admet."""
    if text is None:
        names = chemistry.default_properties()
    else:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names:
            raise ConfigError(f"no properties in {text!r}; choose from: {', '.join(chemistry.PROPERTIES)}")
    if with_admet:
        names += [n for n in chemistry.admet_properties() if n not in names]
    props = chemistry.resolve_properties(names)
    for prop in props:  # a missing extra is reported before any file is read
        chemistry.require_extra(prop)
    return [prop.name for prop in props]


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

    names = _parse_properties(args.properties, args.admet)
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
        help=f"comma-separated subset of: {', '.join(chemistry.PROPERTIES)}, or admet:<endpoint> (default: all "
        f"but {', '.join(sorted(set(chemistry.PROPERTIES) - set(chemistry.default_properties())))}, which need "
        f"{chemistry.admet.INSTALL_HINT})",
    )
    parser.add_argument(
        "--admet",
        action="store_true",
        help=f"also a column per ADMET-AI endpoint, admet:<endpoint> ({len(chemistry.admet.DIRECTIONS)} of them: "
        f"{chemistry.admet.INSTALL_HINT})",
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
