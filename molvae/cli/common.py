"""Helpers shared by the subcommands: model loading, atomic table output."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import io
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from molvae.checkpoint import atomic_write, atomic_write_text
from molvae.config import field_rule
from molvae.errors import ConfigError, InputFileError, MolvaeError


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="zinc-smiles",
        help="model directory written by `molvae train`, or a bundled pretrained model: "
        "zinc-smiles (default) or zinc-selfies",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "auto"],
        help="inference precision (bf16 is faster on AMX CPUs and GPUs)",
    )


def add_config_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config_class: type,
    rows: Sequence[tuple[Any, ...]],
    choices: bool = False,
) -> None:
    """One option per ``(flag, field, type, help[, argparse keywords])`` row, setting that field of the
    dataclass ``config_class``: its defaults (and choices) live in the config, not in copies here.

    Each option is stored under the field's name and defaults to None, so that a new run takes the
    config's default and a resume knows which options were given. The help ends with the config's
    default unless it speaks of the default itself; ``type`` bool makes a flag (no value). With
    ``choices``, the choices of the field's :func:`molvae.config.rule` are the option's.
    """
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    for flag, name, typ, text, *extra in rows:
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kwargs: dict[str, Any] = dict(extra[0]) if extra else {}
        if typ is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = typ
        rule = field_rule(f)
        if choices and rule is not None and rule.choices is not None:
            kwargs["choices"] = list(rule.choices)
        if typ is not bool and "default" not in text:
            text = f"{text} (default: {default})"
        parser.add_argument(flag, dest=name, default=None, help=text, **kwargs)


def add_prior_argument(parser: argparse.ArgumentParser, several: bool = False, default: str | None = "auto") -> None:
    """``--prior``: where sampled latents come from (:mod:`molvae.priors`); ``default=None`` for run settings."""
    text = (
        "auto (the model's default prior, which `molvae info` names), standard (N(0, I)), or the name of a "
        "prior stored with the model (`molvae fit-prior`)"
    )
    if several:
        text += "; several, comma-separated, or 'all' for one row each"
    # default=None leaves the choice to the run's config, whose default is auto
    parser.add_argument("--prior", default=default, help=f"{text} (default {default or 'auto'})")


def add_smiles_column_argument(parser: argparse.ArgumentParser, files: str = "the input") -> None:
    """``--smiles-column``: which column of a table holds the molecules (default: the one named smiles, any case)."""
    parser.add_argument(
        "--smiles-column",
        default=None,
        help=f"column holding SMILES in {files} when it is a table (.csv, .tsv, .parquet; default: "
        "the column named smiles, else canonical_smiles or smi, any case)",
    )


def report_stream(out: str | Path | None) -> TextIO:
    """Where a command's closing summary goes: stderr when its table goes to standard output (``--out -``)."""
    from molvae.tables import is_stdout

    return sys.stderr if is_stdout(out) else sys.stdout


def shown_output(out: str | Path) -> str:
    """An output's name in a summary line: the path, or "standard output" for ``-``."""
    from molvae.tables import is_stdout

    return "standard output" if is_stdout(out) else str(out)


def count_rows(n: int) -> str:
    """``"1 row"`` or ``"{n:,} rows"``, for summary lines."""
    return f"{n:,} {'row' if n == 1 else 'rows'}"


#: Bytes of standard input read before its format is decided.
SNIFF_BYTES = 65_536


def spool_standard_input(cleanup: contextlib.ExitStack, column: str | None = None) -> Path:
    """Copy standard input into a temporary file named after its format (``stdin.csv``, ``stdin.smi``...).

    The molecule readers count records in a first pass and then read them, so a
    stream cannot be read in place. The file lives as long as ``cleanup``.
    """
    from molvae.readers import guess_suffix

    stdin = sys.stdin
    if stdin is None or stdin.isatty():
        raise InputFileError(
            "--input -: standard input is a terminal, not a stream of molecules; pipe a file in "
            "(`molvae sample -o - | molvae properties -i - -o props.csv`) or name one"
        )
    source = stdin.buffer
    head = source.read(SNIFF_BYTES)
    if not head:
        raise InputFileError("--input -: standard input is empty")
    folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="molvae-stdin-")))
    path = folder / f"stdin{guess_suffix(head, column)}"
    with open(path, "wb") as fh:
        fh.write(head)
        shutil.copyfileobj(source, fh, 1 << 20)
    return path


def resolve_standard_input(args: argparse.Namespace, cleanup: contextlib.ExitStack) -> str | None:
    """Point ``args.input`` at a copy of standard input for ``--input -``; the copy's path, else None.

    Only commands that set ``stdin_input`` read standard input; for the others ``-`` is an error.
    """
    if getattr(args, "input", None) != "-":
        return None
    if not getattr(args, "stdin_input", False):
        raise ConfigError(f"--input -: {args.command} does not read standard input; name a file")
    args.input = str(spool_standard_input(cleanup, getattr(args, "smiles_column", None)))
    return args.input


def load_model(args: argparse.Namespace):
    from molvae.model import MolVAE

    return MolVAE.load(args.model, device=args.device, precision=args.precision)


def generated_rows(generated: list[str]) -> pd.DataFrame:
    """Decoded strings as a table: ``smiles`` (canonical where valid, else as generated), ``valid``, ``generated``."""
    from molvae.chemistry import canonicalize

    canonical = [canonicalize(s) if s else None for s in generated]
    return pd.DataFrame(
        {
            "smiles": [c if c is not None else g for c, g in zip(canonical, generated)],
            "valid": [c is not None for c in canonical],
            "generated": generated,
        }
    )


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV (.csv, .csv.gz) or .parquet file atomically."""
    path = Path(path)
    if path.is_dir():
        raise MolvaeError(f"output path is a directory: {path}")
    if path.suffix == ".gz":
        atomic_write(path, gzip.compress(df.to_csv(index=False).encode("utf-8"), mtime=0))
    elif path.suffix == ".parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write(path, buf.getvalue())
    else:
        atomic_write_text(path, df.to_csv(index=False))


def print_table(df: pd.DataFrame, columns: list[str], digits: int = 3) -> None:
    """Print ``columns`` of ``df`` as an aligned plain-text table (floats rounded, NaN as '-')."""
    view = df[columns].copy()
    for name in columns:
        if pd.api.types.is_float_dtype(view[name]):
            view[name] = view[name].map(lambda x: "-" if pd.isna(x) else f"{x:.{digits}f}")
    print(view.to_string(index=False))
