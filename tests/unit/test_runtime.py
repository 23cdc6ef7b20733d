from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

CODE = "from molvae.runtime import tune_allocator; print(tune_allocator(), tune_allocator())"


def _run(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("MOLVAE_TUNE_MALLOC", None)
    if env_value is not None:
        env["MOLVAE_TUNE_MALLOC"] = env_value
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"),
                    reason="mallopt tuning applies to glibc only")
def test_allocator_is_tuned_on_glibc_and_idempotent() -> None:
    assert _run(None) == "True True"


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_env_switch_leaves_the_allocator_alone(value: str) -> None:
    assert _run(value) == "False False"
