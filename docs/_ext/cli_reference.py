"""The parser that the CLI reference documents: molvae's own, with preformatted epilogs kept as printed.

sphinx-argparse reads every description and epilog as reStructuredText. An epilog that a
``RawDescriptionHelpFormatter`` prints line by line as written (``molvae optimize``'s
table of objectives) is not reStructuredText; as a literal block the page shows it as
``molvae optimize --help`` does. Everything else is :func:`molvae.cli.main.build_parser`'s.
"""

from __future__ import annotations

import argparse
import textwrap

from molvae.cli.main import build_parser


def reference_parser() -> argparse.ArgumentParser:
    """``build_parser()`` with every preformatted subcommand epilog turned into a reStructuredText literal block."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for sub in commands.choices.values():
        if sub.epilog and issubclass(sub.formatter_class, argparse.RawDescriptionHelpFormatter):
            sub.epilog = "::\n\n" + textwrap.indent(sub.epilog, "    ")
    return parser
