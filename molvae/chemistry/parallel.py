"""Worker processes for RDKit work over long lists of molecules."""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

__all__ = ["PARALLEL_THRESHOLD", "map_chunks", "resolve_workers"]

# Below this many molecules property_table/canonicalize_many stay in-process when n_jobs is None.
# Forking the pool costs about as much as scoring a few dozen molecules and the workers gain
# nothing when the cores are busy elsewhere; the threshold sits well above break-even so the
# small batches of an optimization loop never fork a process that holds a model
# (measurements: docs/PERFORMANCE.md, "Parallel property tables").
PARALLEL_THRESHOLD = 1_000

# Molecules per task sent to a worker: large enough that pickling and dispatch are negligible
# next to the few milliseconds per molecule of QED+SA, small enough to balance load.
_CHUNK_SIZE = 2_000


def resolve_workers(n_jobs: int | None, n_items: int) -> int:
    """Worker processes for ``n_items`` molecules: ``n_jobs`` as in :func:`molvae.chemistry.canonicalize_many`."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n_jobs is None:
        return available if n_items > PARALLEL_THRESHOLD and available > 1 else 1
    if n_jobs == -1:
        return available
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer, -1 or None, got {n_jobs}")
    return n_jobs


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork on Linux: workers start in milliseconds and, unlike spawn/forkserver,
    # do not re-import the caller's __main__, so scripts without an
    # `if __name__ == "__main__"` guard keep working. Workers only run RDKit
    # code, never torch, so threads the parent holds are not touched in them.
    # Elsewhere (macOS, Windows) fork is unsafe or missing: use spawn.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def map_chunks(func: Callable[[Any], Any], items: list[Any], workers: int, extra: tuple = ()) -> list[Any]:
    """Apply ``func((chunk, *extra))`` (or ``func(chunk)`` without extra) over chunks in worker processes."""
    if not items:
        return []
    chunk = max(1, min(_CHUNK_SIZE, math.ceil(len(items) / workers)))
    tasks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    if extra:
        tasks = [(task, *extra) for task in tasks]
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=_mp_context()) as pool:
        return list(pool.map(func, tasks))
