"""`--out -` on a pipe whose reader goes away, or a full disk: an error and a non-zero exit, never "wrote N rows"."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

COMMAND = [sys.executable, "-m", "molvae.cli.main", "sample", "--n", "3000", "--seed", "0", "--out", "-"]


def test_a_reader_that_stops_early_ends_the_command_with_a_broken_pipe() -> None:
    """`molvae sample --n 3000 -o - | head -2`: the table is larger than a pipe holds, so the command must see that
    its reader left (exit 141, as a tool killed by SIGPIPE) instead of claiming 3,000 samples written."""
    proc = subprocess.Popen(COMMAND, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, err
    assert head[0].startswith(b"smiles,valid,generated")
    assert "wrote" not in err and "Traceback" not in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_under_standard_output_is_an_error() -> None:
    with open("/dev/full", "wb") as full:
        done = subprocess.run(COMMAND, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "No space left on device" in done.stderr and "wrote" not in done.stderr
