"""Options shared by the bulk commands (encode, decode, properties, reconstruct, sample): memory and batch limits,
kept columns."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from molvae.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd


def add_limit_arguments(parser: argparse.ArgumentParser, chunk_size: int, batch_size: int | None = None) -> None:
    """``--chunk-size`` (molecules held in memory at a time) and, for model commands, ``--batch-size``."""
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=chunk_size,
        help=f"molecules read, processed and written at a time: bounds memory (default {chunk_size:,})",
    )
    if batch_size is not None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=batch_size,
            help=f"molecules per model batch; halved automatically on GPU out-of-memory (default {batch_size:,})",
        )


def positive_int(value: object, flag: str) -> int:
    """``value`` if it is a positive integer, else a one-line :class:`ConfigError` naming ``flag``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{flag} must be a positive integer, got {value!r}")
    return value


def add_keep_columns_argument(parser: argparse.ArgumentParser) -> None:
    """``--keep-columns``: input columns copied into the output table, so rows keep their IDs."""
    parser.add_argument(
        "--keep-columns",
        default=None,
        metavar="COLS",
        help="comma-separated input columns to copy into the output, first (an ID, an assay "
        "value...); for .smi/.txt input, 'name' is the text after the SMILES",
    )


def keep_columns(text: str | None, output_columns: list[str]) -> list[str]:
    """The ``--keep-columns`` list; a repeated name or one the output already has is a :class:`ConfigError`."""
    if text is None:
        return []
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise ConfigError(f"--keep-columns: empty column name in {text!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--keep-columns: {', '.join(map(repr, repeated))} given twice")
    taken = [n for n in names if n in output_columns]
    if taken:
        raise ConfigError(
            f"--keep-columns: the output already has a column {', '.join(map(repr, taken))} "
            f"(output columns: {', '.join(output_columns)}); rename it in the input"
        )
    return names


def with_kept_columns(df: pd.DataFrame, kept: dict[str, list]) -> pd.DataFrame:
    """``df`` with the ``--keep-columns`` values of its rows put first (in place)."""
    for i, (name, values) in enumerate(kept.items()):
        df.insert(i, name, values)
    return df
