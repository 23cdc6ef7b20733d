"""A flow-matching prior: a small velocity network carries N(0, I) noise to the encoder's codes.

Conditional flow matching (Lipman et al. 2023; rectified flow, Liu et al. 2023) over the
standardized active dimensions: along the straight path x_t = (1 - t) x0 + t x1 from
noise x0 to a code x1, a network v(x, t) is regressed onto x1 - x0. Drawing integrates
dx/dt = v from t = 0 to 1 (Heun's method, fixed steps); the log density integrates the
divergence of v back from a code to the noise (instantaneous change of variables, exact
trace: the active dimensions are few). Trained on the CPU in a minute or two.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from molvae.errors import ConfigError
from molvae.priors.base import Prior

#: Sinusoidal features of t: sin and cos of pi * k * t for k = 1 .. TIME_FREQUENCIES.
TIME_FREQUENCIES = 8


@dataclass
class FlowConfig:
    """Size and training of :class:`FlowPrior`."""

    hidden: int = 256
    layers: int = 3
    steps: int = 8000
    batch_size: int = 1024
    lr: float = 2e-3
    ode_steps: int = 8
    seed: int = 0

    def validate(self) -> FlowConfig:
        if min(self.hidden, self.layers, self.steps, self.batch_size, self.ode_steps) < 1 or not self.lr > 0:
            raise ConfigError(f"flow: sizes and steps must be >= 1 and lr > 0, got {asdict(self)}")
        return self


class VelocityField(nn.Module):
    """v(x, t): an MLP over x and sinusoidal features of t."""

    def __init__(self, dim: int, hidden: int, layers: int):
        super().__init__()
        self.register_buffer(
            "frequencies", math.pi * torch.arange(1, TIME_FREQUENCIES + 1, dtype=torch.float64), persistent=False
        )
        sizes = [dim + 2 * TIME_FREQUENCIES] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            blocks += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None] * self.frequencies.to(x.dtype)
        return self.net(torch.cat([x, angles.sin(), angles.cos()], dim=1))


class FlowPrior(Prior):
    """Flow matching over the standardized active dimensions, N(0, I) over the rest."""

    config_class = FlowConfig
    kind = "flow"
    description = "flow matching over the active dimensions (a small velocity network, ODE draws)"
    differentiable = False  # its density is an ODE solve with one backward pass per dimension per step

    def __init__(
        self,
        dim: int,
        active: np.ndarray,
        field: VelocityField,
        shift: np.ndarray,
        scale: np.ndarray,
        config: FlowConfig,
    ):
        super().__init__(dim, active)
        # float64: a block's draws then do not move with the thread count's rounding.
        self.field = field.double().eval()
        self.shift = np.asarray(shift, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.config = config

    @classmethod
    def fit(cls, codes: np.ndarray, dim: int, active: np.ndarray, config: FlowConfig, echo=None) -> FlowPrior:
        """Train on posterior means ``codes`` [N, len(active)] of the active dimensions."""
        config.validate()
        codes = np.asarray(codes, dtype=np.float64)
        shift, scale = codes.mean(0), codes.std(0) + 1e-8
        data = torch.from_numpy((codes - shift) / scale).float()
        gen = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)  # the network's initial weights
        field = VelocityField(data.shape[1], config.hidden, config.layers)
        opt = torch.optim.AdamW(field.parameters(), lr=config.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.steps, pct_start=0.05)
        start, report = time.perf_counter(), max(1, config.steps // 10)
        for step in range(config.steps):
            x1 = data[torch.randint(len(data), (config.batch_size,), generator=gen)]
            x0 = torch.randn(x1.shape, generator=gen)
            t = torch.rand(len(x1), generator=gen)
            xt = (1 - t[:, None]) * x0 + t[:, None] * x1
            loss = ((field(xt, t) - (x1 - x0)) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if echo is not None and (step + 1) % report == 0:
                echo(
                    f"flow step {step + 1:,}/{config.steps:,}: loss {loss.item():.4f} "
                    f"({time.perf_counter() - start:.0f} s)"
                )
        return cls(dim, active, field, shift, scale, config)

    def _transform(self, noise: np.ndarray, uniform: np.ndarray | None = None) -> np.ndarray:
        return self._integrate(noise.astype(np.float64), forward=True) * self.scale + self.shift

    def _chart(self, x: np.ndarray):
        u = self._integrate(((x - self.shift) / self.scale)[None, :], forward=False)[0]
        return u, self._transform

    @torch.no_grad()
    def _integrate(self, x: np.ndarray, forward: bool) -> np.ndarray:
        """Carry standardized points from noise to codes (``forward``) or back (Heun: Euler predictor, trapezoid
        corrector)."""
        x = torch.from_numpy(np.asarray(x, dtype=np.float64))
        h = 1.0 / self.config.ode_steps if forward else -1.0 / self.config.ode_steps
        for k in range(self.config.ode_steps):
            t = torch.full((len(x),), k * h if forward else 1.0 + k * h, dtype=x.dtype)
            v = self.field(x, t)
            v_next = self.field(x + h * v, t + h)
            x = x + 0.5 * h * (v + v_next)
        return x.numpy()

    def _divergence(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v(x, t) and its exact divergence, one backward pass per dimension."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            v = self.field(x, t)
            div = torch.zeros(len(x), dtype=x.dtype)
            for i in range(x.shape[1]):
                div += torch.autograd.grad(v[:, i].sum(), x, retain_graph=i < x.shape[1] - 1)[0][:, i]
        return v.detach(), div

    def _log_prob_active(self, x: np.ndarray) -> np.ndarray:
        y = torch.from_numpy((x - self.shift) / self.scale)
        h = 1.0 / self.config.ode_steps
        integral = torch.zeros(len(y), dtype=y.dtype)
        for k in range(self.config.ode_steps, 0, -1):  # Heun backwards from the code (t = 1) to the noise (t = 0)
            t = torch.full((len(y),), k * h, dtype=y.dtype)
            v, div = self._divergence(y, t)
            v_prev, div_prev = self._divergence(y - h * v, t - h)
            y = y - 0.5 * h * (v + v_prev)
            integral += 0.5 * h * (div + div_prev)
        base = -0.5 * (y**2).sum(1) - 0.5 * y.shape[1] * math.log(2 * math.pi)
        return (base - integral).numpy() - np.log(self.scale).sum()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "shift": torch.from_numpy(self.shift),
            "scale": torch.from_numpy(self.scale),
            # trained in float32, so float32 storage is exact
            **{f"field.{k}": v.float() for k, v in self.field.state_dict().items()},
        }

    def settings(self) -> dict[str, Any]:
        return asdict(self.config)

    @classmethod
    def tensor_shapes(cls, n_active: int, settings: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        config = FlowConfig(**settings).validate()
        shapes = {
            k: tuple(v.shape) for k, v in VelocityField(n_active, config.hidden, config.layers).state_dict().items()
        }
        return {"shift": (n_active,), "scale": (n_active,), **{f"field.{k}": v for k, v in shapes.items()}}

    @classmethod
    def from_stored(
        cls, dim: int, active: np.ndarray, tensors: dict[str, torch.Tensor], settings: dict[str, Any]
    ) -> FlowPrior:
        config = FlowConfig(**settings).validate()
        field = VelocityField(len(active), config.hidden, config.layers)
        field.load_state_dict(
            {k.removeprefix("field."): v.float() for k, v in tensors.items() if k.startswith("field.")}
        )
        scale = tensors["scale"].double().numpy()
        if not (scale > 0).all():
            raise ConfigError("flow scales must be positive")
        return cls(dim, active, field, tensors["shift"].double().numpy(), scale, config)
