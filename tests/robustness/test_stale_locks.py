"""A C++ extension build killed halfway must not hang the next process that needs it.

torch marks a build in progress with a ``lock`` file and waits for it to vanish, without
a time limit; these tests kill a real build and check that the next run recovers.
(molvae's own GRU kernel: ``tests/unit/test_recurrent.py``.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from molvae.extensions import torch_build_directory
from molvae.recurrent import KERNEL_SWITCH
from tests.optimize_runs import FAST

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "c++")) is None, reason="no C++ compiler to build the kernel with"
)

BOTORCH_BUILD = "from botorch.acquisition.multi_objective.logei import _try_load_fused_kernel; _try_load_fused_kernel()"


def _killed_build(env: dict[str, str], lock: Path) -> None:
    """Start BoTorch's own compile of its fused kernel and SIGKILL it while it holds torch's lock."""
    build = subprocess.Popen(
        [sys.executable, "-c", BOTORCH_BUILD], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not lock.exists() and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    build.kill()
    build.wait(timeout=30)
    assert lock.exists(), "the build ended before it could be interrupted"


def test_a_killed_botorch_kernel_build_does_not_hang_pareto_optimization(small_model_dir, tmp_path) -> None:
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "extensions")}
    lock = tmp_path / "extensions" / "logei_fused_ext" / "lock"
    _killed_build(env, lock)
    # molvae's own GRU kernel would also be compiled into the empty extensions folder: it is
    # not what this test is about (test_recurrent.py covers its lock), so decoding skips it.
    env[KERNEL_SWITCH] = "0"
    out = tmp_path / "pareto"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "molvae.cli.main",
            "optimize",
            "--model",
            str(small_model_dir),
            "--objectives",
            "qed,logp",
            "--budget",
            "8",
            *FAST,
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr
    assert "left by an interrupted build of BoTorch's fused hypervolume kernel" in done.stderr
    assert not lock.exists()
    assert list(lock.parent.glob("logei_fused_ext.*")), "the kernel was built after all"
    assert (out / "pareto.csv").exists()


def test_the_build_directory_is_where_torch_builds(tmp_path, monkeypatch) -> None:
    """molvae clears the lock where torch looks for it: with and without TORCH_EXTENSIONS_DIR."""
    from torch.utils.cpp_extension import _get_build_directory

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert torch_build_directory("x") == Path(_get_build_directory("x", verbose=False))
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert torch_build_directory("x") == Path(_get_build_directory("x", verbose=False))
