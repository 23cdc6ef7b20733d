"""Batch loops that survive running out of GPU memory: a failed batch is retried at half the size.

Every batched loop of :class:`molvae.model.MolVAE` (encode, decode, sample) goes
through :func:`iter_batches`. A batch that raises ``torch.OutOfMemoryError`` is
retried with half as many items, down to one; the later batches keep the smaller
size (the memory that was missing once is missing again). Out of memory with a
single item raises :class:`~molvae.errors.ResourceLimitError`.

With temperature sampling a retried batch draws fresh random numbers, so a run that
hit the limit decodes different (equally valid) samples than one that did not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

from molvae.errors import ConfigError, ResourceLimitError

log = logging.getLogger(__name__)

T = TypeVar("T")

# torch.OutOfMemoryError appeared in torch 2.5 as the public name of torch.cuda.OutOfMemoryError.
OUT_OF_MEMORY: type[BaseException] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` if it is a positive integer, else a :class:`ConfigError`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
    return batch_size


def iter_batches(fn: Callable[[int, int], T], n: int, batch_size: int, what: str = "batch") -> Iterator[T]:
    """Yield ``fn(start, stop)`` for consecutive slices that cover ``range(n)``, each at most ``batch_size`` long.

    A slice whose call raises an out-of-memory error is retried at half its length
    (down to 1) and the smaller size is kept for the rest; ``what`` names the work
    in the warning and in the error raised when even one item does not fit.
    """
    size = check_batch_size(batch_size)
    start = 0
    while start < n:
        stop = min(n, start + size)
        try:
            result = fn(start, stop)
        except OUT_OF_MEMORY as exc:
            if stop - start == 1:
                # CUDA's message runs to several sentences of allocator advice; its first one says enough.
                detail = str(exc).strip().split(". ")[0] or type(exc).__name__
                raise ResourceLimitError(
                    f"{what}: out of GPU memory even with batch size 1 ({detail}); free GPU memory or use --device cpu"
                ) from exc
            size = max(1, (stop - start) // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # hand back what the failed batch had allocated before retrying
            log.warning("%s: out of GPU memory with batch size %d; retrying with %d", what, stop - start, size)
            continue
        yield result
        start = stop
