"""The table of subcommands: name → the module that registers it, and its one-line help.

Listed here rather than found by importing every module: `molvae --help` and `molvae
--version` then start without torch, pandas and RDKit, and a command imports only its own
module (a torch import alone takes about a second and a half). A new subcommand is one entry
here plus a module with ``register(subparsers)`` that calls :func:`add_command`.
"""

from __future__ import annotations

import argparse
from typing import Any, NamedTuple


class Command(NamedTuple):
    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "train": Command("molvae.cli.train", "train a VAE (or resume one)"),
    "sample": Command("molvae.cli.sample", "sample molecules from the prior"),
    "encode": Command("molvae.cli.encode", "encode molecules to latent vectors (.npy)"),
    "decode": Command("molvae.cli.decode", "decode latent vectors (.npy) to molecules"),
    "reconstruct": Command("molvae.cli.reconstruct", "encode and decode molecules, report exact matches"),
    "properties": Command(
        "molvae.cli.properties", "compute RDKit properties (MW, logP, QED, SA, ...) for a file of molecules"
    ),
    "demo": Command("molvae.cli.demo", "tour on the bundled model: interpolate two drugs, optimize solubility"),
    "evaluate": Command("molvae.cli.evaluate", "MOSES metrics of generated molecules"),
    "optimize": Command("molvae.cli.optimize", "Bayesian optimization of molecules in latent space"),
    "interpolate": Command("molvae.cli.interpolate", "decode the latent path between two molecules (names or SMILES)"),
    "explore": Command("molvae.cli.explore", "decode the latent neighbourhood of a molecule (name or SMILES)"),
    "info": Command("molvae.cli.info", "describe a model: representation, architecture, training, last figures"),
    "fit-prior": Command("molvae.cli.fit_prior", "fit a learned latent prior and store it with the model"),
}


def add_command(subparsers: argparse._SubParsersAction, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``, with its help line from :data:`COMMANDS`."""
    return subparsers.add_parser(name, help=COMMANDS[name].help, **kwargs)
