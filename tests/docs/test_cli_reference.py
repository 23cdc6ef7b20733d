"""The CLI reference lists every subcommand and every option of the parsers it is generated from."""

from __future__ import annotations

import argparse
import html
import re
from html.parser import HTMLParser

import pytest

from molvae.cli.main import build_parser

pytest.importorskip("sphinx", reason="the docs extra (make docs) is not installed")

# MyST-Parser 5.2 still reads an attribute that Sphinx 9 deprecates (for Sphinx 11); nothing molvae can change
pytestmark = pytest.mark.filterwarnings(
    "ignore:'myst_parser.sphinx_ext.myst_refs.MystReferenceResolver.app' is deprecated:PendingDeprecationWarning"
)


class _Text(HTMLParser):
    """The visible text of an HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def _text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return html.unescape(" ".join(parser.chunks))


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """The option strings ``--help`` lists, less -h/--help (every command has it; the reference leaves it out)."""
    return [
        option
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and action.help != argparse.SUPPRESS
        for option in action.option_strings
    ]


def _has_option(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


@pytest.fixture(scope="module")
def page(cli_site) -> str:
    site, _ = cli_site
    return (site / "reference" / "cli.html").read_text(encoding="utf-8")


def test_the_cli_reference_builds_without_warnings(cli_site) -> None:
    _, warnings = cli_site
    assert warnings == ""


def test_option_names_in_help_texts_keep_their_two_hyphens(page) -> None:
    """Help texts name other options (--resume: "only --epochs ... may change"); smart quotes would print an en dash."""
    text = _text(page)
    assert "may change" in text
    assert re.search("\u2013[a-z]", text) is None  # an en dash before a word


def test_every_subcommand_and_option_is_in_the_cli_reference(page) -> None:
    parser = build_parser()
    text = _text(page)
    assert _options(parser) == ["--debug", "--version"]
    for option in _options(parser):
        assert _has_option(text, option), option
    for name, sub in _subparsers(parser).items():
        assert re.search(rf"molvae {re.escape(name)}\b", text), name
        for option in _options(sub):
            assert _has_option(text, option), (name, option)
