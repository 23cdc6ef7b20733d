"""Training schedules: β of the KL term and the learning rate, as functions of the global step.

Each schedule is one entry of its table: the name ``--kl-schedule`` / ``--lr-schedule`` take
(the choices of :class:`~molvae.training.config.TrainConfig` come from the keys) and a function of
``(step, steps_per_epoch, total_steps, cfg)`` for β, of ``(progress, cfg)`` after the warm-up
for the learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from molvae.training.config import TrainConfig


def _kl_constant(step: int, steps_per_epoch: int, total_steps: int, cfg: TrainConfig) -> float:
    return cfg.kl_weight


def _kl_linear(step: int, steps_per_epoch: int, total_steps: int, cfg: TrainConfig) -> float:
    """From 0 to ``kl_weight`` over ``kl_warmup_epochs`` (at most the whole run, so a short run still reaches it)."""
    warm = min(cfg.kl_warmup_epochs * steps_per_epoch, total_steps)
    return cfg.kl_weight if warm <= 0 else cfg.kl_weight * min(1.0, step / warm)


def _kl_cyclical(step: int, steps_per_epoch: int, total_steps: int, cfg: TrainConfig) -> float:
    """``kl_cycles`` cycles over the run, each ramping over its first half (Fu et al. 2019)."""
    cycle = max(1.0, total_steps / cfg.kl_cycles)
    phase = (step % cycle) / cycle
    return cfg.kl_weight * min(1.0, phase / 0.5)


KL_SCHEDULES: dict[str, Callable[[int, int, int, TrainConfig], float]] = {
    "linear": _kl_linear,
    "cyclical": _kl_cyclical,
    "constant": _kl_constant,
}


def kl_beta(step: int, steps_per_epoch: int, total_steps: int, cfg: TrainConfig) -> float:
    """β at a global step, by ``cfg.kl_schedule``."""
    return KL_SCHEDULES[cfg.kl_schedule](step, steps_per_epoch, total_steps, cfg)


def _lr_constant(progress: float, cfg: TrainConfig) -> float:
    return cfg.lr


def _lr_cosine(progress: float, cfg: TrainConfig) -> float:
    """Cosine decay from ``lr`` to ``min_lr_ratio * lr``."""
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


LR_SCHEDULES: dict[str, Callable[[float, TrainConfig], float]] = {"constant": _lr_constant, "cosine": _lr_cosine}


def learning_rate(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """LR at a global step: linear warm-up, then ``cfg.lr_schedule`` over the rest of the run.

    The warm-up lasts ``warmup_steps``, but at most half the run: a short run (``--max-steps``,
    a small data set) must still reach the peak LR and decay from it.
    """
    warm = min(cfg.warmup_steps, total_steps // 2)
    if warm and step < warm:
        return cfg.lr * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    return LR_SCHEDULES[cfg.lr_schedule](progress, cfg)
