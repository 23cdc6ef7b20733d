"""molvae: a GRU sequence VAE over SMILES/SELFIES with latent-space Bayesian optimization.

Heavy submodules (torch) load on first use, so ``import molvae.chemistry`` or a
data worker process does not pay for torch.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("molvae")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

_LAZY = {
    "MolVAE": "molvae.model",
    "ModelConfig": "molvae.model",
    "TrainConfig": "molvae.training",
    "train": "molvae.training",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'molvae' has no attribute {name!r}")
