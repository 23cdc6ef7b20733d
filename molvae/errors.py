"""Exceptions molvae raises for problems a user can fix.

Every error a user can cause (bad file, bad SMILES, unknown token, missing model)
derives from :class:`MolvaeError`; the CLI prints these as one line and exits
non-zero, and prints a traceback only with ``--debug``.
"""

from __future__ import annotations


def shorten(item: object, limit: int = 80) -> str:
    """``repr(item)`` cut to about ``limit`` characters, so a message quoting user input stays one short line."""
    text = repr(item)
    if len(text) <= limit:
        return text
    size = f" ({len(item):,} characters)" if isinstance(item, (str, bytes)) else ""
    return f"{text[: limit - 3]}...{size}"


class MolvaeError(Exception):
    """Base class for user-facing errors."""

    #: Raised while a run (train, optimize) was under way, with its progress saved: the CLI
    #: says that --resume continues it once the cause is fixed.
    resumable = False


class InputFileError(MolvaeError):
    """A molecule file is missing, unreadable or has no usable column."""


class InvalidMoleculeError(MolvaeError):
    """A SMILES/SELFIES string does not parse into a valid molecule."""


class UnknownTokenError(MolvaeError):
    """A molecule contains a token that is not in the model's vocabulary."""

    def __init__(self, token: str, molecule: str):
        self.token = token
        self.molecule = molecule
        super().__init__(
            f"unknown token {shorten(token)} in molecule {shorten(molecule)} (not in the model's vocabulary)"
        )


class ModelLoadError(MolvaeError):
    """A model directory is missing, incomplete, corrupted or inconsistent."""


class ConfigError(MolvaeError):
    """A configuration value has the wrong type or is out of range."""


class DataError(MolvaeError):
    """A dataset could not be built (e.g. nothing left after filtering)."""


class MissingExtraError(MolvaeError):
    """A feature needs an optional extra that is not installed (the message says how to install it)."""


class ResourceLimitError(MolvaeError):
    """Work does not fit the available memory even at the smallest batch size."""


class RunInUseError(MolvaeError):
    """Another process is writing the same run directory."""


class ObjectiveError(MolvaeError):
    """An objective cannot be parsed, imported, or returned something unusable."""


class ObjectiveFailure(ObjectiveError):
    """An objective failed while scoring molecules: it raised, ended the process, or returned unusable values."""

    resumable = True  # the scores paid for so far are in the run's journal
