"""Every ``molvae`` command line in the code blocks of the README and of the docs pages (the model card,
getting started, the guides) parses with the current CLI: options renamed or removed in the code fail
here instead of in a user's terminal."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from molvae.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# The pages that teach commands (docs/reference/ is generated from the parsers themselves).
DOCUMENTS = [
    ROOT / "README.md",
    *(DOCS / name for name in ("getting-started.md", "MODEL_CARD.md", "PERFORMANCE.md", "BO_BENCHMARK.md")),
    *sorted((DOCS / "guide").glob("*.md")),
]


def _commands_of(document: Path) -> list[str]:
    """The argument lists of the ``molvae ...`` and ``torchrun ... -m molvae.cli.main`` lines in ``document``'s
    code blocks."""
    commands = []
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", document.read_text(), flags=re.M | re.S)
    for line in "\n".join(blocks).replace("\\\n", " ").splitlines():  # continued lines joined
        line = line.split(" #", 1)[0].split(" | ", 1)[0].strip()  # the molvae part of a pipeline
        m = re.match(r"(?:molvae |torchrun .*?-m molvae\.cli\.main )(.*)", line)
        if m and "..." not in m.group(1):  # "molvae optimize ... --resume" abbreviates a command
            commands.append(m.group(1))
    return commands


def _readme_commands() -> list[str]:
    """The commands of every document in :data:`DOCUMENTS`."""
    return [command for document in DOCUMENTS for command in _commands_of(document)]


def test_readme_has_commands() -> None:
    commands = _readme_commands()
    assert len(commands) >= 20
    found = {shlex.split(c)[0] for c in commands}
    assert {"train", "sample", "encode", "decode", "optimize", "interpolate", "explore", "evaluate"} <= found


def test_readme_quick_tour_covers_the_main_tasks() -> None:
    """The README's own quick tour trains, samples, interpolates and optimizes from the command line."""
    tour = {shlex.split(c)[0] for c in _commands_of(ROOT / "README.md")}
    assert {"train", "sample", "interpolate", "optimize"} <= tour


def test_guides_exist_and_show_commands() -> None:
    """Each task page of docs/guide/ shows at least one command that parses (checked above)."""
    guides = sorted((DOCS / "guide").glob("*.md"))
    assert len(guides) >= 8
    for guide in guides:
        assert _commands_of(guide), f"{guide.name}: no molvae command in its code blocks"


@pytest.mark.parametrize("command", _readme_commands())
def test_readme_command_parses(command: str) -> None:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            build_parser().parse_args(shlex.split(command))
        except SystemExit:
            pytest.fail(f"molvae {command}\n{stderr.getvalue()}")
