"""Acquisition: the next latent points to decode, given GPs fitted to the scores so far.

One table entry per acquisition: ``ACQUISITIONS`` maps each name ``--acquisition`` takes
(and :class:`~molvae.optimization.config.OptimizeConfig` accepts) to a proposer and what it
supports. Several objectives always use ``propose_pareto`` (qLogNEHVI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from botorch.acquisition import qUpperConfidenceBound
from botorch.acquisition.logei import qLogExpectedImprovement
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.objective import GenericMCObjective
from botorch.generation.sampling import MaxPosteriorSampling
from botorch.models import ModelListGP
from botorch.optim import optimize_acqf
from torch.quasirandom import SobolEngine

from molvae.extensions import load_botorch_kernels
from molvae.optimization.density import LatentDensity, density_weighted

if TYPE_CHECKING:
    from molvae.optimization.config import OptimizeConfig


@dataclass
class Proposal:
    """What a proposer is given: the GP, its data, the box to search and how many points to return.

    ``constraint``: ``(gp, floor)``, a model of a quantity that must stay ``>= floor`` (the
    similarity to a lead), for acquisitions that take one. ``ref_point``: the hypervolume's
    reference point, with several objectives. ``density``: how far each candidate's latent prior
    density falls below a floor, which log-valued acquisitions pay ``config.density_weight`` for
    (``molvae.optimization.density``).
    """

    model: Any
    X: torch.Tensor
    Y: torch.Tensor
    bounds: torch.Tensor
    q: int
    config: OptimizeConfig
    constraint: tuple[Any, float] | None = None
    ref_point: torch.Tensor | None = None
    density: LatentDensity | None = None


def _maximize(acq: Any, p: Proposal, sequential: bool = False) -> torch.Tensor:
    """q points maximizing ``acq`` in the box (multi-start L-BFGS-B, BoTorch's optimize_acqf), less the density
    penalty where the proposal has one."""
    if p.density is not None and p.config.density_weight > 0:
        acq = density_weighted(acq, p.density, p.config.density_weight)
        # In a joint batch the smooth maximum over the q points hands the gradient to the best
        # one, so the weight would move it alone; one at a time, each candidate is weighed.
        sequential = True
    cand, _ = optimize_acqf(
        acq,
        bounds=p.bounds,
        q=p.q,
        num_restarts=p.config.num_restarts,
        raw_samples=p.config.raw_samples,
        sequential=sequential,
        options={"maxiter": p.config.acq_maxiter, "batch_limit": 8},
    )
    return cand.detach()


def propose_logei(p: Proposal) -> torch.Tensor:
    """qLogExpectedImprovement; with a constraint, BoTorch's constrained form: each sample's improvement
    weighted by a smoothed indicator of the sampled constraint, candidates chosen one after another
    (a joint batch leaves the points that add nothing wherever they started, feasible or not)."""
    if p.constraint is None:
        return _maximize(qLogExpectedImprovement(p.model, best_f=p.Y.max()), p)
    constraint_model, floor = p.constraint
    acq = qLogExpectedImprovement(
        ModelListGP(p.model, constraint_model),
        best_f=p.Y.max(),
        objective=GenericMCObjective(lambda samples, X=None: samples[..., 0]),
        constraints=[lambda samples: floor - samples[..., 1]],
    )
    return _maximize(acq, p, sequential=True)


def propose_ucb(p: Proposal) -> torch.Tensor:
    """qUpperConfidenceBound at ``config.ucb_beta``."""
    return _maximize(qUpperConfidenceBound(p.model, beta=p.config.ucb_beta), p)


def propose_ts(p: Proposal) -> torch.Tensor:
    """Thompson sampling: the maxima of q posterior draws over ``config.ts_candidates`` Sobol points in the box."""
    sobol = SobolEngine(p.X.shape[-1], scramble=True, seed=int(torch.randint(0, 2**31 - 1, (1,))))
    cand = p.bounds[0] + (p.bounds[1] - p.bounds[0]) * sobol.draw(p.config.ts_candidates).to(p.X)
    with torch.no_grad():
        return MaxPosteriorSampling(model=p.model, replacement=False)(cand, num_samples=p.q).detach()


def propose_pareto(p: Proposal) -> torch.Tensor:
    """Several objectives: qLogNoisyExpectedHypervolumeImprovement over ``ref_point``, candidates in turn."""
    load_botorch_kernels()  # its fused kernel, built under molvae's lock (molvae.extensions)
    acq = qLogNoisyExpectedHypervolumeImprovement(
        p.model, ref_point=p.ref_point.tolist(), X_baseline=p.X, prune_baseline=True
    )
    return _maximize(acq, p, sequential=True)


@dataclass(frozen=True)
class Acquisition:
    propose: Callable[[Proposal], torch.Tensor]
    description: str
    constrained: bool = False  # takes a constraint model (OptimizeConfig.similarity_gp)
    log_valued: bool = False  # a log acquisition, so the density's weight adds (OptimizeConfig.density_weight)


ACQUISITIONS: dict[str, Acquisition] = {
    "logei": Acquisition(propose_logei, "qLogExpectedImprovement", constrained=True, log_valued=True),
    "ucb": Acquisition(propose_ucb, "qUpperConfidenceBound"),
    "ts": Acquisition(propose_ts, "Thompson sampling"),
}


def propose_latents(
    model: Any,
    X: torch.Tensor,
    Y: torch.Tensor,
    bounds: torch.Tensor,
    q: int,
    config: OptimizeConfig,
    ref_point: torch.Tensor | None = None,
    constraint: tuple[Any, float] | None = None,
    density: LatentDensity | None = None,
) -> torch.Tensor:
    """q new latent points maximizing the acquisition inside ``bounds`` (2 x d): ``config.acquisition``
    for one objective, ``propose_pareto`` for several."""
    p = Proposal(model, X, Y, bounds, q, config, constraint, ref_point, density)
    if Y.shape[-1] > 1:
        return propose_pareto(p)
    return ACQUISITIONS[config.acquisition].propose(p)
