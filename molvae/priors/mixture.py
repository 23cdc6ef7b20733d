"""A full-covariance Gaussian mixture over the active latent dimensions, fitted by scikit-learn."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.linalg import solve_triangular

from molvae.errors import ConfigError
from molvae.priors.base import Prior


@dataclass
class MixtureConfig:
    """How :class:`GaussianMixturePrior` is fitted (``sklearn.mixture.GaussianMixture``)."""

    components: int = 20
    max_iter: int = 200
    reg_covar: float = 1e-6
    seed: int = 0

    def validate(self) -> MixtureConfig:
        if self.components < 1 or self.max_iter < 1 or not self.reg_covar > 0:
            raise ConfigError(f"mixture: components and max_iter must be >= 1 and reg_covar > 0, got {asdict(self)}")
        return self


class GaussianMixturePrior(Prior):
    """sum_k w_k N(m_k, L_k L_k^T) over the active dimensions, N(0, I) over the rest."""

    config_class = MixtureConfig
    kind = "gmm"
    description = "a full-covariance Gaussian mixture over the active dimensions (scikit-learn)"
    global_chart = False  # each code is whitened by its own component

    def __init__(self, dim: int, active: np.ndarray, weights: np.ndarray, means: np.ndarray, cholesky: np.ndarray):
        super().__init__(dim, active)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.means = np.asarray(means, dtype=np.float64)
        self.cholesky = np.asarray(cholesky, dtype=np.float64)  # lower-triangular factors of the covariances
        self._cumulative = np.cumsum(self.weights / self.weights.sum())

    @classmethod
    def fit(
        cls, codes: np.ndarray, dim: int, active: np.ndarray, config: MixtureConfig, echo=None
    ) -> GaussianMixturePrior:
        """Fit to posterior means ``codes`` [N, len(active)] of the active dimensions."""
        from sklearn.mixture import GaussianMixture

        config.validate()
        if len(codes) < 2 * config.components:
            raise ConfigError(
                f"a {config.components}-component mixture needs at least {2 * config.components} "
                f"molecules, got {len(codes)}"
            )
        gmm = GaussianMixture(
            config.components,
            covariance_type="full",
            max_iter=config.max_iter,
            reg_covar=config.reg_covar,
            random_state=config.seed,
        ).fit(codes)
        if echo is not None:
            echo(
                f"mixture: EM {'converged' if gmm.converged_ else 'stopped unconverged'} after {gmm.n_iter_} "
                f"iterations, mean log-likelihood {gmm.score(codes):.3f}"
            )
        return cls(dim, active, gmm.weights_, gmm.means_, np.linalg.cholesky(gmm.covariances_))

    def _transform(self, noise: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        k = np.minimum(np.searchsorted(self._cumulative, uniform, side="right"), len(self.weights) - 1)
        return self.means[k] + np.einsum("nij,nj->ni", self.cholesky[k], noise)

    def _chart(self, x: np.ndarray):
        # the component most responsible for x, whitened: its draws are m_k + L_k u
        k = int(np.argmax(self._component_log_probs(x[None, :])[0]))
        u = solve_triangular(self.cholesky[k], x - self.means[k], lower=True)
        return u, lambda v: self.means[k] + v @ self.cholesky[k].T

    def _log_prob_active_tensor(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self._component_log_probs_tensor(x), dim=-1)

    def _component_log_probs(self, x: np.ndarray) -> np.ndarray:
        """log w_k + log N(x; m_k, L_k L_k^T) [N, K]."""
        with torch.no_grad():
            return self._component_log_probs_tensor(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()

    def _component_log_probs_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(x; m_k, L_k L_k^T) [..., K] of ``x`` [..., d], differentiable."""
        chol = torch.from_numpy(self.cholesky)
        diff = (x.double().unsqueeze(-2) - torch.from_numpy(self.means)).unsqueeze(-1)  # [..., K, d, 1]
        # Mahalanobis distance through the triangular factor; log det from its diagonal.
        u = torch.linalg.solve_triangular(chol, diff, upper=False).squeeze(-1)
        half_logdet = torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
        d = x.shape[-1]
        return (
            -0.5 * u.pow(2).sum(-1)
            - half_logdet
            - 0.5 * d * math.log(2 * math.pi)
            + torch.from_numpy(self.weights).log()
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "weights": torch.from_numpy(self.weights),
            "means": torch.from_numpy(self.means),
            "cholesky": torch.from_numpy(self.cholesky),
        }

    def settings(self) -> dict[str, Any]:
        return {"components": len(self.weights)}

    @classmethod
    def tensor_shapes(cls, n_active: int, settings: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        k = int(settings["components"])
        return {"weights": (k,), "means": (k, n_active), "cholesky": (k, n_active, n_active)}

    @classmethod
    def from_stored(
        cls, dim: int, active: np.ndarray, tensors: dict[str, torch.Tensor], settings: dict[str, Any]
    ) -> GaussianMixturePrior:
        weights = tensors["weights"].double().numpy()
        if (weights < 0).any() or not math.isclose(weights.sum(), 1.0, abs_tol=1e-6):
            raise ConfigError("mixture weights must be non-negative and sum to 1")
        cholesky = tensors["cholesky"].double().numpy()
        if not (np.diagonal(cholesky, axis1=1, axis2=2) > 0).all():
            raise ConfigError("mixture covariance factors must have a positive diagonal")
        return cls(dim, active, weights, tensors["means"].double().numpy(), np.tril(cholesky))
