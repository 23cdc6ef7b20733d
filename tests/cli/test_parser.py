"""The subcommands' parsers agree with each other on the options they share."""

from __future__ import annotations

import argparse
import dataclasses
from importlib.metadata import version

import pytest

from molvae.cli.main import build_parser, main
from molvae.model import ModelConfig
from molvae.optimization.config import OptimizeConfig
from molvae.training.config import TrainConfig


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_input_and_out_have_the_same_short_flags_everywhere() -> None:
    subparsers = _subparsers()
    seen = {"--input": 0, "--out": 0}
    for name, parser in subparsers.items():
        flags = {opt: a.option_strings for a in parser._actions for opt in a.option_strings}
        for long, short in (("--input", "-i"), ("--out", "-o")):
            if long in flags:
                seen[long] += 1
                assert flags[long] == [long, short], (name, flags[long])
    assert seen["--input"] >= 4 and seen["--out"] >= 10


def test_short_flags_parse_like_long_ones() -> None:
    parser = build_parser()
    short = parser.parse_args(["encode", "-i", "lib.smi", "-o", "z.npy"])
    long = parser.parse_args(["encode", "--input", "lib.smi", "--out", "z.npy"])
    assert (short.input, short.out) == (long.input, long.out) == ("lib.smi", "z.npy")


def test_version_prints_the_installed_version_without_a_command(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"molvae {version('molvae')}"


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["optimize", "--help"]])
def test_version_and_help_start_without_torch_where_the_command_needs_none(argv) -> None:
    """`molvae --version` and `--help` list the commands from molvae.cli.commands without importing any of them."""
    import subprocess
    import sys

    code = (
        f"import sys; from molvae.cli.main import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'pandas', 'rdkit') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    loaded = done.stdout.strip().splitlines()[-1]
    # optimize's own parser needs its module, which may import what it uses; the bare listing needs nothing
    assert loaded == "[]" or argv[0] == "optimize", loaded


def test_the_command_table_and_the_parsers_agree() -> None:
    """Every entry of the table registers a parser of its own name, with the table's help line."""
    from molvae.cli.commands import COMMANDS

    subparsers = _subparsers()
    assert set(subparsers) == set(COMMANDS)
    full = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in full._choices_actions}
    assert helps == {name: entry.help for name, entry in COMMANDS.items()}


@pytest.mark.parametrize("command,shown", [("explore", "standard"), ("sample", "auto"), ("optimize", "auto")])
def test_prior_help_names_the_default_the_command_uses(command, shown, capsys) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert f"(default {shown})" in " ".join(capsys.readouterr().out.split())
    default = next(a.default for a in _subparsers()[command]._actions if a.dest == "prior")
    assert default == (None if command == "optimize" else shown)


def _config_default(config_class: type, name: str) -> object:
    f = next(f for f in dataclasses.fields(config_class) if f.name == name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@pytest.mark.parametrize(
    "command,config_class",
    [("train", TrainConfig), ("train", ModelConfig), ("optimize", OptimizeConfig)],
    ids=["train", "train-model", "optimize"],
)
def test_option_help_shows_the_config_default(command, config_class) -> None:
    """Each option named after a config field says that field's default in its help."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    checked = 0
    for action in _subparsers()[command]._actions:
        if action.dest not in fields or not action.option_strings or action.help is None:
            continue
        if isinstance(action, argparse._StoreTrueAction) or "(default: " not in action.help:
            continue
        default = _config_default(config_class, action.dest)
        if default is None:  # such options say in words what happens without them
            continue
        assert action.help.endswith(f"(default: {default})"), action.dest
        checked += 1
    assert checked >= 6, (command, checked)
