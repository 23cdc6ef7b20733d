"""Fitting a prior to a model's codes of its training molecules."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from molvae.active_units import active_dimensions
from molvae.errors import ConfigError, DataError
from molvae.priors.base import Prior
from molvae.priors.store import PRIOR_KINDS


def fit_prior(
    model,
    smiles: Sequence[str],
    kind: str,
    config: Any = None,
    n_jobs: int | None = None,
    echo: Callable[[str], None] | None = None,
) -> tuple[Prior, dict[str, Any]]:
    """Fit a prior of ``kind`` to the posterior means of ``smiles`` under ``model`` (a :class:`MolVAE`).

    The learned part covers the active dimensions of those codes
    (:func:`molvae.metrics.active_dimensions`); the rest stay N(0, I). Returns the prior
    and a record of the fit (molecules, active dimensions, seconds) for its JSON file.
    """
    cls = PRIOR_KINDS.get(kind)
    if cls is None or cls.config_class is None:
        fittable = [k for k, c in PRIOR_KINDS.items() if c.config_class is not None]
        raise ConfigError(f"cannot fit a prior of kind {kind!r} (kinds: {', '.join(fittable)})")
    config = cls.config_class() if config is None else config
    start = time.perf_counter()
    codes = model.encode(list(smiles), errors="nan", n_jobs=n_jobs)
    codes = codes[np.isfinite(codes).all(axis=1)]
    if len(codes) < 100:
        raise DataError(f"fitting a prior needs at least 100 encodable molecules, got {len(codes)}")
    active = np.flatnonzero(active_dimensions(codes))
    if len(active) == 0:
        raise DataError("the encoder uses none of the latent dimensions: nothing for a prior to model")
    encoded = time.perf_counter()
    if echo is not None:
        echo(
            f"encoded {len(codes):,} molecules in {encoded - start:.0f} s: {len(active)} active dimensions "
            f"of {model.config.latent_dim}"
        )
    prior = cls.fit(codes[:, active], model.config.latent_dim, active, config, echo=echo)
    info = {
        "molecules": int(len(codes)),
        "active_dimensions": int(len(active)),
        "config": vars(config),
        "encode_seconds": round(encoded - start, 1),
        "fit_seconds": round(time.perf_counter() - encoded, 1),
    }
    return prior, info
