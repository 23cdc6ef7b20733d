"""The Fréchet ChemNet distance (FCD): ChemNet activations, their mean and covariance, the distance.

ChemNet and the distance come from the ``fcd`` package, imported only when one of them is
needed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch


def _fcd_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def chemnet_activations(canonical: Sequence[str], device: str | None = None, batch_size: int = 512) -> np.ndarray:
    """ChemNet penultimate activations [n, 512] (``fcd`` package, in-process, fp32)."""
    import fcd

    if len(canonical) == 0:
        return np.zeros((0, 512), dtype=np.float32)
    model = fcd.load_ref_model()
    with warnings.catch_warnings():
        # fcd stacks its batches with numpy's deprecated `row_stack` alias: about fcd's code, not the molecules.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message="`row_stack` alias is deprecated")
        return fcd.get_predictions(model, list(canonical), batch_size=batch_size, n_jobs=0, device=_fcd_device(device))


def mu_sigma(act: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ChemNet activations, the two statistics FCD compares."""
    act = act.astype(np.float64)
    if len(act) < 2:
        return np.full(act.shape[1], np.nan), np.full((act.shape[1], act.shape[1]), np.nan)
    return act.mean(0), np.cov(act, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance of two Gaussians given by mean and covariance; NaN when a mean is not finite."""
    import fcd

    if not (np.isfinite(mu1).all() and np.isfinite(mu2).all()):
        return math.nan
    with warnings.catch_warnings():
        # fcd passes sqrtm's `disp` argument, which SciPy deprecates: a warning about fcd's code, not the data.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message="The `disp` argument is deprecated")
        return float(fcd.calculate_frechet_distance(mu1, sigma1, mu2, sigma2))
