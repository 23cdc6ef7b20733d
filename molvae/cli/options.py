"""Options shared by the bulk commands (encode, properties, reconstruct, sample): memory and batch limits."""

from __future__ import annotations

import argparse

from molvae.errors import ConfigError


def add_limit_arguments(parser: argparse.ArgumentParser, chunk_size: int, batch_size: int | None = None) -> None:
    """``--chunk-size`` (molecules held in memory at a time) and, for model commands, ``--batch-size``."""
    parser.add_argument("--chunk-size", type=int, default=chunk_size,
                        help=f"molecules read, processed and written at a time: bounds memory (default {chunk_size:,})")
    if batch_size is not None:
        parser.add_argument("--batch-size", type=int, default=batch_size,
                            help=f"molecules per model batch; halved automatically on GPU out-of-memory "
                                 f"(default {batch_size:,})")


def positive_int(value: object, flag: str) -> int:
    """``value`` if it is a positive integer, else a one-line :class:`ConfigError` naming ``flag``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{flag} must be a positive integer, got {value!r}")
    return value
