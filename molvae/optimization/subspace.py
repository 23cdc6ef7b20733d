"""The latent dimensions BO searches: those the encoder uses (``subspace`` "active" or "auto"), or all of them.

Collapsed dimensions carry no information about the molecule: as GP inputs they are noise the
kernel must learn to ignore, and the acquisition would search them too.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import torch

from molvae.active_units import active_dimensions
from molvae.data import moses_file, sample_smiles
from molvae.errors import MolvaeError

log = logging.getLogger(__name__)

__all__ = ["ACTIVE_SAMPLE", "active_latent_dimensions", "search_mask"]

# MOSES training molecules whose codes decide which latent dimensions are active (--subspace active)
ACTIVE_SAMPLE = 1000


def active_latent_dimensions(model) -> np.ndarray:
    """Boolean mask of ``model``'s active latent dimensions (:func:`molvae.metrics.active_dimensions`),
    from the codes of :data:`ACTIVE_SAMPLE` random MOSES training molecules (a fixed sample)."""
    z = model.encode(list(_active_sample()), errors="nan")
    n = int(np.isfinite(z).all(axis=1).sum())
    if n < ACTIVE_SAMPLE // 10:
        raise MolvaeError(
            f"the model encodes only {n} of {ACTIVE_SAMPLE} MOSES training molecules (its vocabulary "
            "is another chemistry), too few to tell its active latent dimensions"
        )
    mask = active_dimensions(z)
    if not mask.any():
        raise MolvaeError("no latent dimension is active (the posterior ignores the molecule: posterior collapse)")
    return mask


@functools.lru_cache(maxsize=1)
def _active_sample() -> tuple[str, ...]:
    """The fixed MOSES training sample of :func:`active_latent_dimensions`, read once per process (sampling
    passes over the whole training file)."""
    return tuple(sample_smiles(moses_file("train"), ACTIVE_SAMPLE, seed=0, column="SMILES"))


def search_mask(model, subspace: str, saved_state: dict[str, Any] | None) -> torch.Tensor | None:
    """The mask of the dimensions to search for ``subspace`` "active" or "auto" (None: search them all).

    ``saved_state``: a resumed run's state.json, whose ``active_dims`` (None: all) the run keeps,
    even under a model whose mask would now differ.
    """
    d = model.config.latent_dim
    if saved_state is not None and "active_dims" in saved_state:
        dims = saved_state["active_dims"]
        return None if dims is None else torch.as_tensor(np.isin(np.arange(d), dims))
    try:
        mask = active_latent_dimensions(model)
    except MolvaeError as exc:
        if subspace == "active":
            raise MolvaeError(f"--subspace active: {exc}; use --subspace full") from None
        log.warning("%s; BO searches all %d latent dimensions", exc, d)
        return None
    if mask.all():
        log.info("the model uses all %d latent dimensions; BO searches them all", d)
        return None
    log.info(
        "BO searches the %d latent dimensions the encoder uses, of %d (--subspace %s)", int(mask.sum()), d, subspace
    )
    return torch.as_tensor(mask)
