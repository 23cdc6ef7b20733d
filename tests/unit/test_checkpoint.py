"""Run-directory locks (molvae.checkpoint.lock_run_dir) with real second processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from molvae.checkpoint import LOCK_FILE, lock_run_dir
from molvae.errors import MolvaeError, RunInUseError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX record locks")


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path, lock_holder) -> None:
    holder = lock_holder(tmp_path)
    with pytest.raises(RunInUseError, match=rf"in use by another molvae process \(pid {holder.pid}\)") as info:
        lock_run_dir(tmp_path)
    assert isinstance(info.value, MolvaeError) and "\n" not in str(info.value)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, lock_holder) -> None:
    holder = lock_holder(tmp_path)
    holder.kill()  # SIGKILL: no cleanup code runs, the OS drops the lock
    holder.wait()
    lock = lock_run_dir(tmp_path)
    assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    lock.release()


def test_one_process_may_hold_it_twice_and_keeps_it_until_the_last_release(tmp_path) -> None:
    first = lock_run_dir(tmp_path)
    second = lock_run_dir(tmp_path)  # e.g. a notebook resuming, in one kernel, a run it started
    first.release()
    first.release()  # a second release of the same hold changes nothing
    probe = [
        sys.executable,
        "-c",
        "import sys; from molvae.checkpoint import lock_run_dir; lock_run_dir(sys.argv[1])",
        str(tmp_path),
    ]
    refused = subprocess.run(probe, capture_output=True, text=True)
    assert refused.returncode != 0 and "RunInUseError" in refused.stderr
    second.release()
    assert subprocess.run(probe, capture_output=True, text=True).returncode == 0
