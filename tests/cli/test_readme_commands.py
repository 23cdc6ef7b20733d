"""Every ``molvae`` command line in the README's and the model card's code blocks parses with the
current CLI: options renamed or removed in the code fail here instead of in a user's terminal."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from molvae.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", ROOT / "docs" / "MODEL_CARD.md"]


def _readme_commands() -> list[str]:
    """The argument lists of the ``molvae ...`` and ``torchrun ... -m molvae.cli.main`` lines in code blocks."""
    commands = []
    for document in DOCUMENTS:
        blocks = re.findall(r"^```[a-z]*\n(.*?)^```", document.read_text(), flags=re.M | re.S)
        for line in "\n".join(blocks).replace("\\\n", " ").splitlines():  # continued lines joined
            line = line.split(" #", 1)[0].split(" | ", 1)[0].strip()  # the molvae part of a pipeline
            m = re.match(r"(?:molvae |torchrun .*?-m molvae\.cli\.main )(.*)", line)
            if m and "..." not in m.group(1):  # "molvae optimize ... --resume" abbreviates a command
                commands.append(m.group(1))
    return commands


def test_readme_has_commands() -> None:
    commands = _readme_commands()
    assert len(commands) >= 20
    found = {shlex.split(c)[0] for c in commands}
    assert {"train", "sample", "encode", "decode", "optimize", "interpolate", "explore", "evaluate"} <= found


@pytest.mark.parametrize("command", _readme_commands())
def test_readme_command_parses(command: str) -> None:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            build_parser().parse_args(shlex.split(command))
        except SystemExit:
            pytest.fail(f"molvae {command}\n{stderr.getvalue()}")
