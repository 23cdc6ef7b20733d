"""What every latent prior is: seeded, batch-invariant draws and a log density over the full latent space.

A VAE is trained with z ~ N(0, I) as its prior, but the codes its encoder gives the
training molecules (the aggregate posterior) fill only part of that space: most
dimensions are collapsed (the encoder ignores them, the decoder sees noise there) and
the few active ones hold a lumpy cloud. A learned prior models that cloud over the
active dimensions and keeps N(0, I) on the collapsed ones, where it is still what the
decoder was trained on.

Draws are keyed by position (``molvae.seeding.keyed_rows``): each block of
``molvae.seeding.PRIOR_BLOCK`` rows is made whole from its own generator, starting
with the same N(0, I) block as ``molvae.seeding.prior_latents``, so a seed gives
the same latents whatever ``n``, ``start`` or batching, and a learned prior transforms
the very noise the standard prior would have used.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from molvae.errors import ConfigError
from molvae.seeding import keyed_rows, standard_block

_LOG_2PI = math.log(2 * math.pi)


def _standard_log_prob(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """log N(x; 0, I) over the last axis of ``x`` (an array or a differentiable tensor)."""
    return -0.5 * (x**2).sum(-1) - 0.5 * x.shape[-1] * _LOG_2PI


class Prior:
    """A distribution over latents [N, dim]: the standard normal here; learned kinds override two methods.

    ``active``: indices of the dimensions the learned part models (all dimensions for the
    standard normal). Subclasses set :attr:`kind`, implement ``_transform`` (N(0, I)
    noise of the active dimensions → a draw) and ``_log_prob_active``, and list their
    tensors in :meth:`tensors` and JSON-able settings in :meth:`settings` for storage.
    """

    kind: ClassVar[str] = "standard"
    #: The dataclass of the kind's fitting settings (None: nothing to fit).
    config_class: ClassVar[type | None] = None
    #: What ``molvae info`` and ``--help`` say of this kind.
    description: ClassVar[str] = "N(0, I), the prior the VAE was trained with"
    #: Whether one map (``_chart``) carries every code to its noise and back, as
    #: :meth:`~molvae.priors.Prior.path` needs.
    global_chart: ClassVar[bool] = True
    #: Whether :meth:`~molvae.priors.Prior.log_prob_tensor` gives gradients cheaply enough for
    #: an acquisition's optimizer.
    differentiable: ClassVar[bool] = True

    def __init__(self, dim: int, active: np.ndarray | None = None):
        self.dim = int(dim)
        self.active = np.arange(self.dim) if active is None else np.asarray(active, dtype=np.int64)
        self.name = self.kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dim {self.dim}, {len(self.active)} modelled dimensions)"

    # ---- drawing
    def sample(self, n: int, seed: int, start: int = 0) -> np.ndarray:
        """Rows ``start .. start + n - 1`` of the seed's sequence of draws [n, dim] (float32)."""
        return keyed_rows(int(n), self.dim, seed, int(start), self._block)

    def _block(self, rng: np.random.Generator) -> np.ndarray:
        z = standard_block(rng, self.dim)
        if type(self)._transform is not Prior._transform:
            uniform = rng.random(len(z))  # after the normals, so the standard block is the same for every kind
            z[:, self.active] = self._transform(z[:, self.active], uniform)
        return z

    def _transform(self, noise: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        """Draws of the active dimensions from their N(0, I) ``noise`` and one U(0, 1) variate per row."""
        return noise

    # ---- neighbourhoods
    def around(self, center: np.ndarray, noise: np.ndarray, radius: float) -> np.ndarray:
        """Latents near ``center`` [dim]: ``noise`` [n, dim] of N(0, I) steps of size ``radius`` in the prior's own
        noise.

        The standard normal gives ``center + radius * noise``. A learned prior maps the
        active dimensions of ``center`` back to the noise that draws it, steps there and
        maps forward, so the neighbours follow the codes' shape instead of a round ball;
        the other dimensions step as under the standard normal.
        """
        center = np.asarray(center, dtype=np.float64)
        z = center[None, :] + radius * np.asarray(noise, dtype=np.float64)
        if type(self)._chart is not Prior._chart:
            u, forward = self._chart(center[self.active])
            z[:, self.active] = forward(u[None, :] + radius * noise[:, self.active])
        return z.astype(np.float32)

    def _chart(self, x: np.ndarray):
        """(noise ``u`` that draws the code ``x`` of the active dimensions, the map from noise back to codes)."""
        return x, lambda u: u

    # ---- paths
    def path(self, a: np.ndarray, b: np.ndarray, t: np.ndarray, join) -> np.ndarray:
        """Points [len(t), dim] from code ``a`` to code ``b``, joined by ``join`` (lerp or slerp) in the prior's noise.

        The active dimensions of both ends are carried to the noise that draws them, joined
        there and carried forward, so the path follows the density of the codes instead of
        cutting across the gaps between them; the other dimensions are joined directly, as
        under the standard normal. The points at ``t = 0`` and ``t = 1`` are exactly ``a``
        and ``b``. Needs one map for all codes (:attr:`global_chart`).
        """
        t = np.asarray(t, dtype=np.float64)
        z = join(a, b, t)
        if type(self)._chart is Prior._chart:
            return z
        if not self.global_chart:
            raise ConfigError(
                f"the {self.name!r} prior has no single map from codes to noise to draw a path in; "
                "use a flow prior or the standard one"
            )
        u_a, forward = self._chart(np.asarray(a, dtype=np.float64)[self.active])
        u_b, _ = self._chart(np.asarray(b, dtype=np.float64)[self.active])
        z[:, self.active] = forward(join(u_a, u_b, t))
        z[t == 0.0], z[t == 1.0] = a, b  # the maps there and back are not exact inverses
        return z

    # ---- density
    def log_prob(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        """Log density of each row of ``z`` [N, dim] (float64 array of N values, in nats)."""
        z = np.asarray(z.detach().cpu() if isinstance(z, torch.Tensor) else z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"latents must have shape [N, {self.dim}], got {list(z.shape)}")
        rest = np.setdiff1d(np.arange(self.dim), self.active)
        return _standard_log_prob(z[:, rest]) + self._log_prob_active(z[:, self.active])

    def _log_prob_active(self, x: np.ndarray) -> np.ndarray:
        """Log density of the active dimensions [N] (by default :meth:`_log_prob_active_tensor`, in chunks)."""
        with torch.no_grad():
            parts = [self._log_prob_active_tensor(torch.from_numpy(c)) for c in np.split(x, range(4096, len(x), 4096))]
        return torch.cat(parts).numpy()

    def log_prob_tensor(self, z: torch.Tensor) -> torch.Tensor:
        """Differentiable log density of each code in ``z`` [..., dim] (float64 tensor of shape [...]).

        What a gradient-based search (the density-weighted acquisition of
        ``molvae.optimization.density``) needs; kinds whose density costs an ODE solve
        (:attr:`differentiable` False) refuse in one line.
        """
        if not self.differentiable:
            raise ConfigError(
                f"the {self.name!r} prior's density is too costly to differentiate; use a gmm prior or the standard one"
            )
        if z.shape[-1] != self.dim:
            raise ValueError(f"latents must have {self.dim} columns, got shape {list(z.shape)}")
        z = z.double()
        rest = torch.ones(self.dim, dtype=torch.bool)
        rest[torch.from_numpy(self.active)] = False
        return _standard_log_prob(z[..., rest]) + self._log_prob_active_tensor(z[..., torch.from_numpy(self.active)])

    def _log_prob_active_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Log density of the active dimensions of ``x`` [..., len(active)], differentiable."""
        return _standard_log_prob(x)

    # ---- storage (molvae.priors.store)
    def tensors(self) -> dict[str, torch.Tensor]:
        """Named tensors that, with :meth:`settings`, rebuild this prior."""
        return {}

    def settings(self) -> dict[str, Any]:
        """JSON-able settings beside :meth:`tensors`."""
        return {}

    @classmethod
    def from_stored(
        cls, dim: int, active: np.ndarray, tensors: dict[str, torch.Tensor], settings: dict[str, Any]
    ) -> Prior:
        """Rebuild from what :meth:`tensors` and :meth:`settings` gave (shapes already checked by the caller)."""
        return cls(dim, active)

    @classmethod
    def tensor_shapes(cls, n_active: int, settings: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """The shape each stored tensor must have, so a damaged or foreign file is refused before use."""
        return {}


class StandardNormal(Prior):
    """N(0, I) over every dimension: what ``molvae.seeding.prior_latents`` draws."""
