"""The subcommands' parsers agree with each other on the options they share."""

from __future__ import annotations

import argparse
from importlib.metadata import version

import pytest

from molvae.cli.main import build_parser, main


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
