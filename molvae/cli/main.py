"""Entry point of the ``molvae`` command.

Each subcommand lives in its own module under :mod:`molvae.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Collection, Sequence
from pathlib import Path

from molvae import __version__
from molvae.cli.commands import COMMANDS
from molvae.errors import MolvaeError
from molvae.folders import CONFIG_FILE
from molvae.runtime import tune_allocator


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The ``molvae`` parser: the full arguments of every subcommand, or of those in ``commands``.

    The others are then bare entries of :data:`~molvae.cli.commands.COMMANDS` (name and help
    line), whose modules are not imported: `molvae --help` lists them without loading torch.
    """
    parser = argparse.ArgumentParser(
        prog="molvae", description="GRU sequence VAE for molecules: train, sample, encode, explore and optimize."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    # The version alone: importing torch or RDKit to report theirs would slow every --version.
    parser.add_argument("--version", action="version", version=f"molvae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, entry in COMMANDS.items():
        if commands is None or name in commands:
            importlib.import_module(entry.module).register(sub)
        else:
            sub.add_parser(name, help=entry.help)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is one), or None (``--help``, ``--version``...)."""
    return next((word for word in argv if word in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_in(argv)
    args = build_parser([command] if command else []).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    tune_allocator()
    with contextlib.ExitStack() as cleanup:
        return _run(args, cleanup)


def _run(args: argparse.Namespace, cleanup: contextlib.ExitStack) -> int:
    stdin_copy: str | None = None  # the temporary file holding `--input -`, called "standard input" in messages

    def message(exc: BaseException) -> str:
        return str(exc).replace(stdin_copy, "standard input") if stdin_copy else str(exc)

    from molvae.cli.common import resolve_standard_input  # here: it imports pandas and torch, which --help need not

    try:
        stdin_copy = resolve_standard_input(args, cleanup)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader gone before a buffered print is a broken pipe too
        return code
    except MolvaeError as exc:
        if args.debug:
            traceback.print_exc()
        hint = _resume_hint(args, "fix the cause and add --resume to continue it") if exc.resumable else ""
        print(f"molvae {args.command}: error: {message(exc)}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # a run interrupted after its folder was set up continues where it stopped
        print(f"molvae {args.command}: interrupted{_resume_hint(args, 'add --resume to continue it')}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of the printed output has gone (`| head`): stop quietly, as Unix tools do,
        # and point stdout at /dev/null so that Python's flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the broken pipe
    except (OSError, ValueError) as exc:
        # Unanticipated but user-facing (disk full, permission denied, bad value):
        # still one line unless --debug.
        if args.debug:
            traceback.print_exc()
        print(f"molvae {args.command}: error: {type(exc).__name__}: {message(exc)}", file=sys.stderr)
        return 1


def _resume_hint(args: argparse.Namespace, what: str) -> str:
    """``"; the run so far is in OUT: {what}"`` for a train or optimize run that saved its settings, else ``""``."""
    out = getattr(args, "out", None) if args.command in ("train", "optimize") else None
    return f"; the run so far is in {out}: {what}" if out and Path(out, CONFIG_FILE).is_file() else ""


if __name__ == "__main__":
    sys.exit(main())
