"""C++ extensions compiled on first use, built without hanging on a lock an interrupted build left.

``torch.utils.cpp_extension.load`` marks a build in progress with a plain ``lock`` file in
the build directory and waits, without a time limit or a message, for it to vanish. A
build killed by Ctrl-C or a timeout leaves that file behind, and every later process on
the machine would wait forever. Every compiled-on-first-use path molvae reaches goes
through :func:`build_lock`, which holds an OS file lock (``flock``) while it loads: the
OS releases it when its process dies, so whoever holds it knows that a ``lock`` file
there is stale.

The paths: molvae's CPU GRU kernel (:func:`molvae.recurrent.cpu_kernel`) and BoTorch's
fused qLogEHVI kernel, which Pareto optimization loads (:func:`load_botorch_kernels`).
``torch.compile`` on CPU needs nothing: its locks are ``flock`` locks already.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

log = logging.getLogger(__name__)


@contextlib.contextmanager
def build_lock(directory: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the build ``directory`` of ``what``, after removing a ``lock`` file a killed build
    left.

    A process that finds the lock held waits for it and says so.
    """
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no flock, leave torch's own locking alone
        yield
        return
    with open(directory / "molvae.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is building %s in %s; waiting for it", what, directory)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            stale = directory / "lock"
            if stale.exists():
                log.warning("removing %s, left by an interrupted build of %s", stale, what)
                stale.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def extensions_root() -> Path:
    """``$TORCH_EXTENSIONS_DIR``, else torch's default build root (``~/.cache/torch_extensions``)."""
    from torch.utils.cpp_extension import get_default_build_root

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())


def torch_build_directory(name: str) -> Path:
    """Where ``torch.utils.cpp_extension.load(name=...)`` builds when it is not given a directory.

    Without ``TORCH_EXTENSIONS_DIR`` torch adds a folder for the Python version and the
    accelerator (``py311_cpu``, ``py311_cu128``...).
    """
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return extensions_root() / name
    if torch.version.hip is not None:
        accelerator = f"rocm{torch.version.hip.replace('.', '')}"
    elif torch.version.cuda is not None:
        accelerator = f"cu{torch.version.cuda.replace('.', '')}"
    else:
        accelerator = "cpu"
    python = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    return extensions_root() / f"{python}_{accelerator}" / name


#: BoTorch's fused qLogEHVI / qLogNEHVI kernel: (module, loader function, extension name).
BOTORCH_LOGEI = ("botorch.acquisition.multi_objective.logei", "_try_load_fused_kernel", "logei_fused_ext")


@functools.cache
def load_botorch_kernels() -> None:
    """Load BoTorch's fused hypervolume kernel under :func:`build_lock` (once per process).

    BoTorch compiles it on the first qLogNEHVI it makes (about a minute, once per machine)
    and falls back to its Python loop, with a warning, where it cannot. Loading it here
    first, under the lock, is what keeps an earlier interrupted compile from hanging the run.
    A BoTorch without this loader has nothing to prepare.
    """
    module_name, loader_name, ext = BOTORCH_LOGEI
    loader = getattr(importlib.import_module(module_name), loader_name, None)
    if loader is None:
        log.debug("%s has no %s; nothing to build", module_name, loader_name)
        return
    directory = torch_build_directory(ext)
    if not any(directory.glob(f"{ext}.*")):  # said only when it is slow
        log.info(
            "compiling BoTorch's fused hypervolume kernel (once per machine, about a minute; cached in %s)", directory
        )
    with build_lock(directory, "BoTorch's fused hypervolume kernel"):
        loader()
