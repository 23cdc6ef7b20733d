"""Process-level settings that make CPU training and decoding fast: the memory allocator.

glibc's malloc hands every freed block above its mmap/trim thresholds back to the
operating system. Torch on CPU allocates and frees multi-megabyte activations at
every GRU step, so each step page-faults fresh memory in again, which made small
matmuls several times slower and training steps markedly longer (docs/PERFORMANCE.md,
"Allocator"; ``scripts/bench_train.py`` measures it).
:func:`tune_allocator` keeps freed memory in the process instead, blocks above 32 MiB
included (a training step's saved GRU activations are 20–120 MB each): it stops glibc
from serving any block with its own mmap. The price is a resident size that stays at
its peak until the process exits.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30

ENV_SWITCH = "MOLVAE_TUNE_MALLOC"


@functools.cache
def tune_allocator() -> bool:
    """Keep freed memory in the process (glibc only); True when the settings took effect.

    Idempotent. Set ``MOLVAE_TUNE_MALLOC=0`` to leave the allocator alone (for
    example to compare speeds, or to keep the resident size low). Other C
    libraries (musl, macOS, Windows) are left alone and give False.
    """
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        # The C library this process already runs on, not one found on disk.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.debug("no mallopt in this process's C library; allocator left alone")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # Setting either threshold also switches off glibc's dynamic adjustment. With no mmapped
    # blocks at all, large blocks come from the heap and are reused once freed; the mmap
    # threshold still matters where glibc falls back to mmap (a heap that cannot grow).
    ok = (
        bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
        and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        and bool(mallopt(_M_MMAP_MAX, 0))
    )
    if not ok:
        log.debug("mallopt refused the thresholds; allocator left as it was")
    return ok
