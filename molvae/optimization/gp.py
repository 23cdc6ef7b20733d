"""The surrogate model: the GP's training data (and the codes of the molecules in it), its fit, and the boxes
the acquisition searches (TuRBO's trust region among them).

Under a similarity constraint (lead optimization), TuRBO's region is sized by the box of
the feasible codes rather than of all of them (``trust_region_box``).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from botorch.exceptions import ModelFittingError
from botorch.exceptions.warnings import InputDataWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Normalize, Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood

from molvae.optimization.constraints import Constraints
from molvae.optimization.records import KNOWN

log = logging.getLogger(__name__)

__all__ = [
    "GPData",
    "TrustRegion",
    "data_box",
    "encode_new",
    "feasible_box",
    "fit_gp",
    "gp_data",
    "gp_window_index",
    "lengthscale",
    "trust_region_box",
]


class GPData(NamedTuple):
    """What the GP is fit on, in float64: codes ``X``, scores ``Y`` (infeasible rows at the worst value), each
    row's Tanimoto ``similarity`` to the reference molecule (NaN without one) and whether it was ``feasible``."""

    X: torch.Tensor
    Y: torch.Tensor
    similarity: torch.Tensor
    feasible: torch.Tensor


def gp_window_index(Y: np.ndarray, window: int) -> np.ndarray:
    """Rows (in order) the GP is fit on: all when there are at most ``window``, else the best half
    of the window plus the latest rows, so a round's cost stays flat at thousands of points."""
    n = len(Y)
    if n <= window:
        return np.arange(n)
    rank = Y.sum(axis=1) if Y.shape[1] > 1 else Y[:, 0]
    best = np.argsort(-rank, kind="stable")[: window // 2]
    chosen = set(best.tolist())
    latest = [i for i in range(n - 1, -1, -1) if i not in chosen][: window - len(best)]
    return np.sort(np.concatenate([best, np.array(latest, dtype=int)]))


def gp_data(
    records: Sequence[dict[str, Any]],
    latents: Mapping[str, np.ndarray],
    score_columns: Sequence[str],
    latent_dim: int,
    window: int,
) -> GPData:
    """The :class:`GPData` of oracle records (scored, supplied or infeasible) whose molecule has a finite code
    in ``latents``, cut to the GP's ``window`` (:func:`gp_window_index`)."""
    recs = [r for r in records if np.all(np.isfinite(latents.get(r["smiles"], np.nan)))]
    if not recs:
        empty = torch.empty(0, latent_dim, dtype=torch.float64)
        return GPData(
            empty,
            torch.empty(0, len(score_columns), dtype=torch.float64),
            torch.empty(0, dtype=torch.float64),
            torch.empty(0, dtype=torch.bool),
        )
    X = np.stack([latents[r["smiles"]] for r in recs]).astype(np.float64)
    Y = np.array([[r[c] for c in score_columns] for r in recs], dtype=np.float64)
    feasible = np.array([bool(r["feasible"]) for r in recs])
    finite = np.isfinite(Y)
    for j in range(Y.shape[1]):
        good = Y[feasible & finite[:, j], j]
        worst = good.min() if good.size else (Y[finite[:, j], j].min() if finite[:, j].any() else 0.0)
        Y[~feasible | ~finite[:, j], j] = worst
    keep = gp_window_index(Y, window)
    sim = np.array([r.get("similarity", np.nan) for r in recs], dtype=np.float64)
    return GPData(
        torch.from_numpy(X[keep]),
        torch.from_numpy(Y[keep]),
        torch.from_numpy(sim[keep]),
        torch.from_numpy(feasible[keep]),
    )


def encode_new(model: Any, records: Sequence[dict[str, Any]], latents: dict[str, np.ndarray]) -> None:
    """Add to ``latents`` the codes of the distinct valid molecules among oracle records (scored, supplied or
    infeasible) that it lacks."""
    todo = [r["smiles"] for r in records if r["status"] in KNOWN and r["smiles"] not in latents]
    # One molecule at a time: a batched GRU's output for a row shifts in the last bits with
    # the batch it sits in, and a resumed run re-encodes everything in different batches.
    # Alone, each code is bit-identical in every process, so the GP (and the run) is too.
    for s in todo:
        latents[s] = model.encode([s], errors="nan")[0]


def fit_gp(X: torch.Tensor, Y: torch.Tensor, bounds: torch.Tensor, maxiter: int | None = 100) -> SingleTaskGP:
    """SingleTaskGP (Normalize inputs to ``bounds``, Standardize outcomes), hyperparameters by marginal likelihood.

    ``maxiter`` caps the L-BFGS iterations of the hyperparameter fit (None: botorch's default),
    which keeps a fit at the window's size to seconds; docs/BO_BENCHMARK.md has what the cap
    costs and saves.
    """
    with warnings.catch_warnings():
        # Constant outcomes (e.g. every molecule so far infeasible) make botorch warn each
        # round that Y is not standardized; the GP is then flat, which is the right answer.
        warnings.filterwarnings("ignore", category=InputDataWarning, message=r"Data \(outcome observations\)")
        model = SingleTaskGP(
            X, Y, input_transform=Normalize(d=X.shape[-1], bounds=bounds), outcome_transform=Standardize(m=Y.shape[-1])
        )
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        try:
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}} if maxiter else None)
        except ModelFittingError as exc:  # keep the prior hyperparameters: still a usable model
            log.debug("GP fit failed (%s); using default hyperparameters", exc)
    model.eval()
    return model


def lengthscale(model: Any) -> torch.Tensor | None:
    """The GP kernel's per-dimension lengthscales (None for a kernel with one, or none)."""
    try:
        ls = model.covar_module.lengthscale
    except AttributeError:
        try:
            ls = model.covar_module.base_kernel.lengthscale
        except AttributeError:
            return None
    ls = ls.detach().reshape(-1)
    return ls if ls.numel() > 1 else None


# --------------------------------------------------------------------------- boxes


@dataclass
class TrustRegion:
    """TuRBO-style box around the incumbent: doubles after successes, halves after failures, restarts when tiny."""

    dim: int
    batch: int
    length: float = 0.8
    length_min: float = 0.5**7
    length_max: float = 1.6
    success_tolerance: int = 3
    failure_tolerance: int = 0
    successes: int = 0
    failures: int = 0
    restarts: int = 0

    def __post_init__(self) -> None:
        if self.failure_tolerance <= 0:
            self.failure_tolerance = int(math.ceil(max(4.0 / self.batch, self.dim / self.batch)))

    def update(self, improved: bool) -> None:
        """Count a round that did (or did not) improve the incumbent; resize the region when a count is full."""
        if improved:
            self.successes += 1
            self.failures = 0
        else:
            self.failures += 1
            self.successes = 0
        if self.successes >= self.success_tolerance:
            self.length = min(2.0 * self.length, self.length_max)
            self.successes = 0
        elif self.failures >= self.failure_tolerance:
            self.length /= 2.0
            self.failures = 0
        if self.length < self.length_min:
            self.length = 0.8
            self.restarts += 1
            self.successes = self.failures = 0

    def bounds(
        self, center: torch.Tensor, lengthscale: torch.Tensor | None, lb: torch.Tensor, ub: torch.Tensor
    ) -> torch.Tensor:
        """Box around ``center`` (raw latent units), widths scaled by the GP lengthscales, inside [lb, ub]."""
        span = ub - lb
        if lengthscale is None:
            weights = torch.ones_like(center)
        else:
            weights = lengthscale / lengthscale.mean()
            weights = weights / torch.prod(weights.pow(1.0 / len(weights)))
        half = self.length / 2.0 * weights * span
        return torch.stack([torch.maximum(center - half, lb), torch.minimum(center + half, ub)])

    def to_dict(self) -> dict[str, Any]:
        """The fields, as state.json keeps them (``TrustRegion(**d)`` restores it)."""
        return asdict(self)


def data_box(X: torch.Tensor, pad: float = 0.1) -> torch.Tensor:
    """[2, D] box spanned by the rows of ``X``, widened on each side by ``pad`` of its width."""
    lo, hi = X.min(0).values, X.max(0).values
    margin = pad * (hi - lo).clamp_min(1e-3)
    return torch.stack([lo - margin, hi + margin])


def feasible_box(X: torch.Tensor, feasible: torch.Tensor, bounds: torch.Tensor, pad: float = 0.1) -> torch.Tensor:
    """:func:`data_box` of the feasible rows of ``X``, inside ``bounds``; ``bounds`` itself when fewer than
    two rows are feasible."""
    if int(feasible.sum()) < 2:
        return bounds
    box = data_box(X[feasible], pad)
    return torch.stack([torch.maximum(box[0], bounds[0]), torch.minimum(box[1], bounds[1])])


def trust_region_box(
    X: torch.Tensor, feasible: torch.Tensor, bounds: torch.Tensor, constraints: Constraints
) -> torch.Tensor:
    """The box TuRBO's region is a fraction of: ``bounds``, or under a similarity constraint
    the :func:`feasible_box`.

    Molecules too far from the lead are decoded from codes outside the lead's neighbourhood
    and would widen the box. Alerts and property ranges are left with ``bounds``: their
    infeasible molecules lie among the feasible ones, and sizing by the feasible codes did
    worse there (docs/BO_BENCHMARK.md).
    """
    if constraints.min_similarity is None:
        return bounds
    return feasible_box(X, feasible, bounds)
