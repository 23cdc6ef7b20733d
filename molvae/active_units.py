"""Active latent dimensions: which dimensions of the latent space the encoder uses.

Kept apart from :mod:`molvae.metrics` (which loads RDKit) so that training's validation,
which reports them every epoch, runs where RDKit is not installed.
"""

from __future__ import annotations

import numpy as np


def active_dimensions(latents: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Which latent dimensions the encoder uses: those whose posterior mean varies across molecules.

    A dimension is active when the variance of its posterior mean over ``latents`` ([N, D]
    posterior means; NaN rows, e.g. molecules ``MolVAE.encode`` skipped, are left out) exceeds
    ``threshold`` (Burda et al. 2016, "Importance Weighted Autoencoders"). A collapsed
    dimension, where q(z|x) equals the prior for every x, has variance near zero. Returns a
    boolean mask of length D.
    """
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"active_units expects posterior means of shape [N, D], got {list(z.shape)}")
    z = z[np.isfinite(z).all(axis=1)]
    if len(z) < 2:
        raise ValueError(f"active_units needs at least 2 encoded molecules, got {len(z)}")
    return z.var(axis=0) > threshold


def active_units(latents: np.ndarray, threshold: float = 0.01) -> int:
    """How many latent dimensions are active (:func:`active_dimensions`)."""
    return int(active_dimensions(latents, threshold).sum())
