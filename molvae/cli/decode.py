"""``molvae decode``: molecules from latent vectors (a .npy array, e.g. from ``molvae encode``), streamed in chunks.

One output row per latent row, in order. Rows with NaN or infinite values (``encode``
writes NaN for molecules it skipped) are not decoded: they come out empty, flagged
``decoded=False``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from molvae.cli.commands import add_command
from molvae.cli.common import add_model_arguments, count_rows, generated_rows, load_model, report_stream, shown_output
from molvae.cli.options import add_limit_arguments, positive_int
from molvae.errors import ConfigError, InputFileError


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "decode", description=__doc__)
    add_model_arguments(p)
    p.add_argument(
        "--input", "-i", required=True, help=".npy array of shape [N, latent_dim] (molvae encode writes one)"
    )
    p.add_argument(
        "--out",
        "-o",
        required=True,
        help="output table (.csv, .tsv, .sdf, each optionally .gz, or .parquet; - for CSV on standard output): "
        "smiles, valid, decoded, generated",
    )
    p.add_argument("--strategy", default="greedy", choices=["greedy", "sample", "beam"])
    p.add_argument(
        "--attempts",
        type=int,
        default=1,
        help="decode each latent this many times (greedy, then samples at --temperature) and keep the "
        "most frequent valid molecule, as interpolate and optimize do (default 1: one decode)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="sampling temperature (default 1.0 with --strategy sample, 0.5 for the --attempts samples)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the sampled decodes (each row's draws depend on the seed and its row number only: the same "
        "output whatever --chunk-size and --batch-size)",
    )
    add_limit_arguments(p, chunk_size=20_000, batch_size=1024)
    p.set_defaults(func=run)


def read_latents(path: str, latent_dim: int) -> np.ndarray:
    """The array in ``path``, memory-mapped (never unpickled), checked to be [N, latent_dim] real numbers."""
    path_ = Path(path)
    if path_.suffix.lower() != ".npy":
        raise InputFileError(f"{path}: decode reads a NumPy .npy array of latents (molvae encode writes one)")
    if not path_.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        z = np.load(path_, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # pickled object arrays, truncated or non-NumPy files
        raise InputFileError(f"{path}: not a NumPy array of numbers ({exc})") from None
    if not (np.issubdtype(z.dtype, np.floating) or np.issubdtype(z.dtype, np.integer)):
        raise InputFileError(f"{path}: holds {z.dtype} values, not numbers")
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise InputFileError(f"{path}: shape {list(z.shape)}, but the model's latents are [N, {latent_dim}]")
    if z.shape[0] == 0:
        raise InputFileError(f"{path}: no latents (0 rows)")
    return z


def latent_rows(z: np.memmap, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``read_latents``'s array as float32, read from its file.

    Not through the memory map: every page read through it stays in the process's
    resident size until the map is closed (400,000 latents of 128 floats: 205 MB by
    the end of the decode).
    """
    if not z.flags.c_contiguous:  # a Fortran-order file: rows are not contiguous on disk
        return np.asarray(z[start:stop], dtype=np.float32)
    width = z.shape[1]
    stop = min(stop, z.shape[0])
    rows = np.fromfile(
        z.filename, dtype=z.dtype, count=(stop - start) * width, offset=z.offset + start * width * z.itemsize
    )
    return rows.reshape(stop - start, width).astype(np.float32, copy=False)


def _rows(decoded: list[str | None], ok: np.ndarray) -> pd.DataFrame:
    """One row per latent: the decodes where ``ok``, empty rows where the latent was not decoded."""
    it = iter(decoded)
    df = generated_rows([(next(it) or "") if good else "" for good in ok])
    df.insert(2, "decoded", ok)
    return df


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from molvae.tables import TableWriter, check_table_file

    positive_int(args.chunk_size, "--chunk-size")
    positive_int(args.batch_size, "--batch-size")
    positive_int(args.attempts, "--attempts")
    if args.attempts > 1 and args.strategy != "greedy":
        raise ConfigError(
            f"--attempts decodes greedily, then samples; it does not combine with --strategy {args.strategy}"
        )
    if args.temperature is not None and not 0 < args.temperature < float("inf"):
        raise ConfigError(f"--temperature must be a finite number > 0, got {args.temperature}")
    out = check_table_file(args.out, inputs=(args.input,), stdout_ok=True)
    model = load_model(args)
    z = read_latents(args.input, model.config.latent_dim)
    n = z.shape[0]
    n_valid = n_skipped = 0
    with TableWriter(out) as table_out, tqdm(total=n, unit="mol", desc="decode", disable=None) as bar:
        for start in range(0, n, args.chunk_size):
            chunk = latent_rows(z, start, start + args.chunk_size)
            ok = np.isfinite(chunk).all(axis=1)
            decoded: list[str | None] = []
            # A sampled decode is keyed by the latent's row in the file: the same output
            # whatever --chunk-size and --batch-size. Blocks of --batch-size rows keep the
            # --attempts decodes of only one block in memory.
            rows, keys = chunk[ok], start + np.flatnonzero(ok)
            for block in range(0, len(rows), args.batch_size):
                part = slice(block, block + args.batch_size)
                if args.attempts > 1:
                    decoded += model.decode_valid(
                        rows[part],
                        attempts=args.attempts,
                        batch_size=args.batch_size,
                        seed=args.seed,
                        keys=keys[part],
                        temperature=0.5 if args.temperature is None else args.temperature,
                    )
                else:
                    decoded += model.decode(
                        rows[part],
                        strategy=args.strategy,
                        batch_size=args.batch_size,
                        seed=args.seed,
                        keys=keys[part],
                        temperature=1.0 if args.temperature is None else args.temperature,
                    )
            df = _rows(decoded, ok)
            table_out.write(df)
            n_valid += int(df["valid"].sum())
            n_skipped += int((~ok).sum())
            bar.update(len(chunk))
    print(
        f"decoded {n - n_skipped:,} of {n:,} latents to {shown_output(out)}: {n_valid:,} valid molecules"
        + (f"; {count_rows(n_skipped)} with NaN or infinite values not decoded" if n_skipped else ""),
        file=report_stream(out),
    )
    return 0
