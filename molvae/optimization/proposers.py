"""What a round proposes: latent codes from the GP and the acquisition (bo, turbo), molecules decoded around
the best feasible ones (local rounds), or molecules of the MOSES training set (screen).

Prior sampling (``prior``) needs nothing beyond the model's prior: the optimizer draws from it.

Molecules that fail a constraint are not scored (see :class:`~molvae.optimization.oracle.Oracle`),
but their codes join the GP's data at the worst score, so the search learns where the constraint
bites. When the GP's proposals under a similarity constraint keep decoding to nothing new and
feasible, every ``local_after``-th such round decodes around the best feasible codes instead
(source ``local`` in evaluations.csv; ``local_molecules``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping

import numpy as np
import torch

from molvae.chemistry import diverse_subset
from molvae.data import moses_file, read_smiles
from molvae.optimization.acquisition import ACQUISITIONS, propose_latents
from molvae.optimization.config import OptimizeConfig
from molvae.optimization.constraints import Constraints
from molvae.optimization.density import LatentDensity
from molvae.optimization.gp import GPData, TrustRegion, data_box, fit_gp, lengthscale, trust_region_box
from molvae.optimization.oracle import Oracle

__all__ = ["ScreenPool", "gp_codes", "is_local_round", "local_molecules", "round_seed", "subspace_codes"]


def round_seed(seed: int, round: int) -> int:
    """The seed of one round: rounds are seeded by (seed, round), so a resumed run repeats the uninterrupted one."""
    return (seed * 1_000_003 + round * 7919) % (2**31 - 1)


def subspace_codes(
    data: GPData, q: int, active: torch.Tensor | None, propose: Callable[[GPData], torch.Tensor]
) -> torch.Tensor:
    """``q`` full codes from ``propose`` run on the ``active`` columns of the data (all where None); the others
    are held at the data's mean, since the decoder ignores them."""
    if active is None:
        return propose(data)
    X = data.X
    z = torch.empty(q, X.shape[1], dtype=X.dtype)
    z[:, ~active] = X[:, ~active].mean(0)
    z[:, active] = propose(data._replace(X=X[:, active]))
    return z


def gp_codes(
    data: GPData,
    q: int,
    config: OptimizeConfig,
    constraints: Constraints,
    method: str,
    tr: TrustRegion,
    idle: int,
    timing: dict[str, float],
    density: LatentDensity | None = None,
) -> torch.Tensor:
    """``q`` points in the space of ``data.X``'s columns: GP fit, then the acquisition in the method's box
    (the data box for bo and several objectives, the trust region for turbo). ``idle``: rounds in a row
    that brought no new molecule; ``timing`` gets the seconds of the fit and of the acquisition; ``density``:
    the latent prior's density penalty over these columns, for ``config.density_weight``."""
    X, Y, S, F = data
    d = X.shape[1]
    bounds = data_box(X)
    t = time.perf_counter()
    gp = fit_gp(X, Y, bounds, maxiter=config.gp_maxiter)
    constraint = None
    floor = constraints.min_similarity
    if (
        config.similarity_gp
        and floor is not None
        and Y.shape[-1] == 1
        and ACQUISITIONS[config.acquisition].constrained
        and torch.isfinite(S).all()
    ):
        # A second GP on the similarity to the lead: qLogEI then weighs each candidate's
        # improvement by its probability of staying similar enough, instead of learning the
        # constraint only from infeasible molecules scored at the worst value.
        constraint = (fit_gp(X, S.unsqueeze(-1), bounds, maxiter=config.gp_maxiter), floor)
    timing["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    ref = None
    if Y.shape[-1] > 1:
        span = (Y.max(0).values - Y.min(0).values).clamp_min(1e-6)
        ref = Y.min(0).values - 0.1 * span
        box = bounds
    elif method == "turbo":
        center = X[Y[:, 0].argmax()]
        region = trust_region_box(X, F, bounds, constraints)
        box = tr.bounds(center, lengthscale(gp), region[0], region[1])
    else:
        box = bounds
    # After rounds that brought nothing new (every decode a repeat or invalid), swap part of
    # the batch for uniform draws in the data box so the search does not sit on known molecules.
    # A round of new infeasible molecules is not idle: the GP learned where the constraint bites.
    n_explore = min(q, idle * max(1, q // 2))
    z = (
        propose_latents(gp, X, Y, box, q - n_explore, config, ref_point=ref, constraint=constraint, density=density)
        if q > n_explore
        else X[:0]
    )
    if n_explore:
        u = torch.rand(n_explore, d, dtype=torch.float64)
        z = torch.cat([z, bounds[0] + (bounds[1] - bounds[0]) * u])
    timing["acquisition"] = time.perf_counter() - t
    return z


def is_local_round(
    config: OptimizeConfig, method: str, stalled: int, constraints: Constraints, n_objectives: int
) -> bool:
    """Whether this round decodes around the best feasible molecules instead of asking the GP."""
    # every local_after-th stalled round, so the GP keeps its turns if the neighbourhood runs dry
    return (
        config.local_after is not None
        and stalled > 0
        and stalled % config.local_after == 0
        and method in ("turbo", "bo")
        and constraints.min_similarity is not None
        and n_objectives == 1
    )


def local_molecules(
    model,
    oracle: Oracle,
    latents: Mapping[str, np.ndarray],
    constraints: Constraints,
    init_radius: float,
    q: int,
    seed: int,
) -> list[str]:
    """New feasible molecules decoded around the best feasible ones, for a run whose GP rounds stall.

    Under a similarity constraint the GP's proposals mostly decode outside the feasible
    region, while the lead's decoded neighbourhood (the initial design) holds the run's
    best molecules. The constraints cost no oracle call to check, so ``32 q`` codes are
    drawn around the three best feasible molecules and a diverse subset (away from the
    incumbent) of the unseen feasible decodes is scored. As in the initial design, the
    radius halves while that finds fewer than ``q``.
    """
    col = oracle.score_columns[0]
    # a molecule the model cannot encode (NaN code) has no neighbourhood to draw from
    top = sorted(
        (r for r in oracle.scored_records() if r["feasible"] and np.all(np.isfinite(latents.get(r["smiles"], np.nan)))),
        key=lambda r: (-r[col], r["smiles"]),
    )[:3]
    if not top:
        return []
    known = {r["smiles"] for r in oracle.records}
    rng = np.random.default_rng(seed)
    centres = np.stack([latents[r["smiles"]] for r in top])
    feasible: set[str] = set()
    r = init_radius
    for radius in (r, r / 2, r / 4):
        pick = rng.integers(len(centres), size=32 * q)
        z = centres[pick] + radius * rng.standard_normal((32 * q, centres.shape[1]))
        decoded = model.decode_valid(z.astype(np.float32), attempts=1, seed=seed)
        new = sorted({s for s in decoded if s and s not in known and s not in feasible})
        if new:
            ok, _, _ = constraints.check(new)
            feasible.update(s for s, good in zip(new, ok) if good)
        if len(feasible) >= q:
            break
    pool = sorted(feasible)
    return [pool[i] for i in diverse_subset(pool, q, start=top[0]["smiles"], seed=seed)]


class ScreenPool:
    """screen: the MOSES training set in a seeded random order, handed out batch by batch.

    ``pos`` counts the molecules handed out (saved in state.json, so a resume walks on).
    """

    def __init__(self, seed: int, pos: int = 0):
        self.seed = seed
        self.pos = pos

    @functools.cached_property
    def _order(self) -> list[str]:
        pool = _moses_train_smiles()
        return [pool[i] for i in np.random.default_rng(self.seed).permutation(len(pool))]

    def take(self, q: int) -> list[str]:
        """The next ``q`` molecules (fewer at the end of the training set)."""
        out = self._order[self.pos : self.pos + q]
        self.pos += len(out)
        return out


@functools.lru_cache(maxsize=1)
def _moses_train_smiles() -> tuple[str, ...]:
    """The MOSES training SMILES, read once per process (screening runs side by side share them)."""
    return tuple(read_smiles(moses_file("train"), column="SMILES"))
