"""Priors over a model's latent space: where sampled latents come from.

``standard`` is N(0, I), the prior every molvae VAE is trained with. Learned priors
(``gmm``, ``flow``) model the codes the encoder actually gives molecules, over the
active dimensions, and are stored beside the weights (``molvae fit-prior``)::

    >>> model = MolVAE.pretrained("zinc-smiles")
    >>> prior = load_prior(model, "auto")        # the model's default prior
    >>> z = prior.sample(1000, seed=0)           # the same rows whatever n and batching
    >>> prior.log_prob(z)                        # nats per latent
"""

from __future__ import annotations

import logging

from molvae.errors import ConfigError, ModelLoadError
from molvae.priors.base import Prior, StandardNormal
from molvae.priors.flow import FlowConfig, FlowPrior
from molvae.priors.mixture import GaussianMixturePrior, MixtureConfig
from molvae.priors.store import (
    PRIOR_KINDS,
    StalePriorError,
    default_prior_name,
    describe_priors,
    read_prior,
    save_prior,
    stored_priors,
)

__all__ = [
    "PRIOR_KINDS",
    "FlowConfig",
    "FlowPrior",
    "GaussianMixturePrior",
    "MixtureConfig",
    "Prior",
    "StalePriorError",
    "StandardNormal",
    "default_prior_name",
    "describe_priors",
    "load_prior",
    "prior_names",
    "read_prior",
    "save_prior",
    "stored_priors",
]

log = logging.getLogger(__name__)


def prior_names(model) -> list[str]:
    """``"standard"`` and the names of the priors stored with ``model`` (a :class:`~molvae.MolVAE`)."""
    return ["standard", *stored_priors(model.source)]


def load_prior(model, name: str | Prior | None = "auto") -> Prior:
    """The prior ``name`` of ``model``: ``"standard"``, ``"auto"`` (its default), a stored name, or a Prior as is."""
    if isinstance(name, Prior):
        if name.dim != model.config.latent_dim:
            raise ConfigError(
                f"the prior is over {name.dim} dimensions, the model's latent space has {model.config.latent_dim}"
            )
        return name
    auto = name in (None, "auto")
    if auto:
        name = default_prior_name(model.source)
    if name == "standard":
        return StandardNormal(model.config.latent_dim)
    if model.source is None:
        raise ModelLoadError(f"prior {name!r}: this model was built in memory and has no stored priors")
    try:
        return read_prior(model.source, name, model.config.latent_dim, model.weights_sha256())
    except StalePriorError as exc:
        if not auto:
            raise
        # A run trained further after its prior was fitted still samples, as it did before the fit.
        log.warning("%s; sampling from N(0, I) instead", exc)
        return StandardNormal(model.config.latent_dim)
