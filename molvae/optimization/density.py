"""Density-guarded acquisition: proposals kept where the latent prior puts the codes of real molecules.

Much of a latent box decodes to nothing valid: the data box spans the codes' extremes, while
the codes fill only part of it. A candidate whose prior log density falls below a floor (a
low quantile of the density of the codes scored so far) loses ``density_weight`` (λ) of
log-valued acquisition (qLogEI, qLogNEHVI) per nat below it, smoothly:
``log EI(z) + λ min(0, log p(z) - floor)``. Above the floor almost nothing changes, so the
search is not pulled toward the density's modes, where the codes of known molecules crowd:
weighting by the density itself, as πBO does (Hvarfner et al., ICLR 2022), turned most
proposals into repeats (``docs/BO_BENCHMARK.md``). The candidates of a batch are chosen one
at a time, each weighed on its own.
"""

from __future__ import annotations

import torch
from botorch.acquisition.acquisition import AcquisitionFunction

from molvae.errors import ConfigError
from molvae.priors import Prior

__all__ = ["DensityWeighted", "LatentDensity", "check_density_prior", "data_density", "density_weighted"]


class LatentDensity(torch.nn.Module):
    """How far below ``floor`` the prior's log density of a search point lies (about 0 above it).

    BO searches the active latent dimensions (``molvae.optimization.subspace``) and holds the
    rest at ``base``, so the density of a search point is the prior's density of the full
    code it stands for. ``columns``: the searched columns (None: all).
    """

    def __init__(self, prior: Prior, base: torch.Tensor, floor: float, columns: torch.Tensor | None = None):
        super().__init__()
        self.prior = prior
        self.base = base.double()
        self.floor = float(floor)
        self.columns = torch.arange(len(base)) if columns is None else columns

    def full(self, X: torch.Tensor) -> torch.Tensor:
        """The full codes [..., dim] that search points ``X`` [..., len(columns)] stand for."""
        full = self.base.expand(*X.shape[:-1], len(self.base)).clone()
        full[..., self.columns] = X.double()
        return full

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """``X`` [..., q, len(columns)] → [..., q]: ``-softplus(floor - log p)``, a smooth ``min(0, log p - floor)``
        (a kink at the floor makes the acquisition's L-BFGS-B fail its line searches)."""
        return -torch.nn.functional.softplus(self.floor - self.prior.log_prob_tensor(self.full(X)))


def check_density_prior(prior: Prior) -> None:
    """Refuse, in one line and before a run starts, a prior whose density cannot steer the acquisition."""
    if not prior.differentiable:
        raise ConfigError(
            f"density_weight (--density-weight) needs a prior whose density can be differentiated; the run's "
            f"prior is {prior.name!r} (use --prior gmm or standard)"
        )


def data_density(prior: Prior, X: torch.Tensor, quantile: float, active: torch.Tensor | None = None) -> LatentDensity:
    """The density penalty for a search over the codes ``X`` [n, dim] (the molecules scored so far).

    The searched columns are ``active`` (a mask; None: all) and the others are held at the
    data's mean, as ``molvae.optimization.proposers.subspace_codes`` holds them. The
    floor is the ``quantile`` of the log densities of ``X``'s own codes so held: a candidate
    as typical as most known molecules pays nothing.
    """
    columns = None if active is None else torch.nonzero(active).squeeze(-1)
    density = LatentDensity(prior, X.mean(0), 0.0, columns)
    own = X if columns is None else X[:, columns]
    with torch.no_grad():
        density.floor = float(torch.quantile(prior.log_prob_tensor(density.full(own)), quantile))
    return density


class DensityWeighted(AcquisitionFunction):
    """``acq(X) + λ Σ_q density(x_q)``: a log-valued acquisition with each candidate's density penalty.

    Pending candidates (a batch chosen one at a time) go to ``acq``, which accounts for
    them, and are not weighed again. BoTorch's ``PriorGuidedAcquisitionFunction`` weighs
    them inside the smooth maximum over the batch: once one dense candidate is chosen, the
    next gets almost no gradient unless it is denser still, so the weight steers only the
    first of a batch.
    """

    def __init__(self, acq: AcquisitionFunction, density: LatentDensity, weight: float):
        super().__init__(model=acq.model)
        self.acq = acq
        self.density = density
        self.weight = float(weight)

    @property
    def X_pending(self) -> torch.Tensor | None:
        return self.acq.X_pending

    def set_X_pending(self, X_pending: torch.Tensor | None = None) -> None:
        self.acq.set_X_pending(X_pending)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """``X`` [batch, q, d] → [batch]."""
        return self.acq(X) + self.weight * self.density(X).sum(-1)


def density_weighted(acq: AcquisitionFunction, density: LatentDensity, weight: float) -> DensityWeighted:
    """``acq`` (log-valued) plus ``weight`` times each candidate's density penalty."""
    return DensityWeighted(acq, density, weight)
