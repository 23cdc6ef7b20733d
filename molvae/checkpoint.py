"""Safe, atomic persistence: JSON configs, safetensors weights, resume state.

Every file is written to a temporary file in the same directory and renamed over
the target, so a killed process leaves either the old or the new file, never a
half-written one. Nothing here unpickles arbitrary objects: weights are
safetensors, configs JSON, and resume state is read with ``weights_only=True``.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from molvae.errors import ModelLoadError, RunInUseError
from molvae.folders import LOCK_FILE

log = logging.getLogger(__name__)


def temp_file_beside(path: Path) -> tuple[int, str]:
    """A new hidden temp file in ``path``'s folder (for a rename onto ``path``): its descriptor and name.

    mkstemp creates it 0600; it gets the permissions a plain open() would give ``path``.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: {what} missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: {what} is not valid JSON ({exc})") from None


def save_weights(
    path: str | os.PathLike, state_dict: dict[str, torch.Tensor], metadata_: dict[str, str] | None = None
) -> None:
    """Save tensors as safetensors, atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    atomic_write(path, st_save(tensors, metadata=metadata_))


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a safetensors file; refuses anything else (e.g. a pickle) with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: weights file missing")
    data = path.read_bytes()
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        hint = " (looks like a pickle; molvae never unpickles model files)" if data[:1] == b"\x80" else ""
        raise ModelLoadError(f"{path}: not a valid safetensors file{hint}: {exc}") from None


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Save a resume state (tensors, numbers, strings, nested dicts/lists) atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load a resume state with ``weights_only=True`` (no arbitrary code on load)."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError/EOFError for bad files
        raise ModelLoadError(f"{path}: cannot load resume state safely ({type(exc).__name__}: {exc})") from None


def hardware_description() -> str:
    """The GPU name, or the CPU model and torch thread count: what a timing was measured on."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads"


def environment_info() -> dict[str, Any]:
    """Package versions, platform and git commit, recorded in every run directory."""
    versions = {}
    for pkg in ("molvae", "torch", "numpy", "pandas", "rdkit", "selfies", "botorch", "gpytorch", "safetensors"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    info: dict[str, Any] = {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "hardware": hardware_description(),
    }
    try:
        repo = Path(__file__).resolve().parent.parent
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        info["git_commit"] = commit.stdout.strip() if commit.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


# realpath of a locked directory -> [fd, holders]: one lock per directory and process (see lock_run_dir).
_HELD: dict[str, list[int]] = {}


class RunLock:
    """This process's hold on a run directory; released by :meth:`release`, garbage collection or exit."""

    def __init__(self, key: str | None):
        self._key = key

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None or key not in _HELD:
            return
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            os.close(_HELD.pop(key)[0])  # closing the descriptor drops the lock

    def __del__(self) -> None:
        self.release()


def lock_run_dir(directory: str | os.PathLike) -> RunLock:
    """Lock ``directory`` (which must exist) against other processes; raise :class:`RunInUseError` if one holds it.

    Two processes resuming one optimization run, or checkpointing one training run, would
    interleave their writes and lose work. The lock is a POSIX record lock on
    ``directory/.molvae.lock``, so the OS drops it when the process dies: a killed run
    leaves no stale lock. Within one process the lock is shared (a notebook may resume a run
    it started), and is released when its last holder is. Where the file system or the
    platform has no locks (Windows, some network mounts) it warns or does nothing, and the run goes on.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        return RunLock(None)
    path = Path(directory) / LOCK_FILE
    key = os.path.realpath(directory)
    if key in _HELD:
        _HELD[key][1] += 1
        return RunLock(key)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            raise RunInUseError(
                f"{directory} is in use by another molvae process (pid {holder}); two processes writing one run "
                "would corrupt it: wait for that one to finish, or choose another --out"
            ) from None
        log.warning("cannot lock %s (%s); nothing stops a second process from writing it", directory, exc.strerror)
        return RunLock(None)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    _HELD[key] = [fd, 1]
    return RunLock(key)
