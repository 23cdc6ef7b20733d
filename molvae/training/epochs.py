"""Bookkeeping of the epoch loop: the run's state, each rank's batches, an epoch's running sums,
its progress display, its means and its close.

The state (a plain dict, saved in ``resume.pt``) holds the run's position, its records and the
running sums of the epoch in progress, so a run resumed mid-epoch reports the whole epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from molvae.datasets import TokenizedData, length_bucketed_batches
from molvae.errors import MolvaeError
from molvae.schedules import kl_beta, learning_rate
from molvae.training.config import TrainConfig, TrainingDiverged
from molvae.training.distributed import DistributedContext

# Consecutive non-finite steps after which training stops instead of skipping.
MAX_CONSECUTIVE_BAD_STEPS = 20


def fresh_partial() -> dict[str, float]:
    """Running sums of an epoch in progress: losses weighted by molecules, molecules seen, seconds spent."""
    return {"loss": 0.0, "recon": 0.0, "kl": 0.0, "n": 0, "mol": 0, "seconds": 0.0}


def new_state() -> dict[str, Any]:
    """A run's position and records before its first step."""
    return {
        "epoch": 0,
        "step_in_epoch": 0,
        "global_step": 0,
        "best_val": math.inf,
        "bad_epochs": 0,
        "skipped_steps": 0,
        "history": [],
        "elapsed": 0.0,
        "partial": fresh_partial(),
    }


def plan_steps(train_data: TokenizedData, n_kept: int, cfg: TrainConfig, world_size: int) -> tuple[int, int]:
    """Optimizer steps per epoch of each rank and in the whole run; a one-line error if there are none."""
    n_batches = len(length_bucketed_batches(train_data.lengths, cfg.batch_size, cfg.seed, 0))
    # Each rank takes every world_size-th batch of the same plan; a remainder is dropped.
    steps_per_epoch = n_batches // world_size
    if len(train_data) == 0:
        raise MolvaeError(
            f"no molecule left to train on: {n_kept} kept, all in the validation split "
            f"(--val-fraction {cfg.val_fraction}); use more data or a smaller --val-fraction"
        )
    if steps_per_epoch == 0:
        raise MolvaeError(
            f"{n_batches} batches cannot be shared by {world_size} processes; use more data or a smaller --batch-size"
        )
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    return steps_per_epoch, total_steps


def epoch_batches(
    train_data: TokenizedData, cfg: TrainConfig, epoch: int, ctx: DistributedContext, steps_per_epoch: int
) -> list[np.ndarray]:
    """This rank's batches of ``epoch``, in order: a pure function of (seed, epoch), so a resume replays them."""
    plan = length_bucketed_batches(train_data.lengths, cfg.batch_size, cfg.seed, epoch)
    return plan[ctx.rank :: ctx.world_size][:steps_per_epoch]


def count_step(
    state: dict[str, Any],
    losses: dict[str, float] | None,
    n_molecules: int,
    world_size: int,
    bad_run: int,
    resume_file: Path,
) -> int:
    """Add a step taken to the epoch's sums and the run's counters; returns the run of NaN/Inf steps so far.

    ``losses`` is None for a step skipped for NaN/Inf; after :data:`MAX_CONSECUTIVE_BAD_STEPS`
    in a row the run stops with :class:`TrainingDiverged`.
    """
    sums = state["partial"]
    if losses is None:
        state["skipped_steps"] += 1
        bad_run += 1
        if bad_run >= MAX_CONSECUTIVE_BAD_STEPS:
            # The weights in memory are suspect, so nothing is written: the last
            # checkpoint on disk (if any) stays the one to go back to.
            kept = (
                f"the last checkpoint ({resume_file}) is kept unchanged"
                if resume_file.exists()
                else "no checkpoint had been written yet"
            )
            raise TrainingDiverged(
                f"loss/gradients were NaN or Inf for {bad_run} consecutive steps (epoch {state['epoch'] + 1}, "
                f"step {state['step_in_epoch']}); stopped: {kept}; lower --lr or --kl-weight, or raise --grad-clip"
            )
    else:
        bad_run = 0
        for key in ("loss", "recon", "kl"):
            sums[key] += losses[key] * n_molecules
        sums["n"] += n_molecules
    sums["mol"] += n_molecules * world_size
    state["global_step"] += 1
    state["step_in_epoch"] += 1
    return bad_run


class EpochProgress:
    """An epoch's progress: a tqdm bar, or without one (logs, batch jobs) a line a minute to show the run is alive."""

    def __init__(
        self, n_batches: int, state: dict[str, Any], cfg: TrainConfig, is_main: bool, echo: Callable[[str], None]
    ):
        self.n_batches, self.state, self.cfg, self.echo = n_batches, state, cfg, echo
        self.bar = tqdm(
            total=n_batches,
            initial=state["step_in_epoch"],
            desc=f"epoch {state['epoch'] + 1}/{cfg.epochs}",
            disable=True if not (cfg.progress and is_main) else None,
            leave=False,
            dynamic_ncols=True,
        )
        self.log_lines = self.bar.disable and is_main
        self.last_log = time.monotonic()
        self.last = {"loss": math.nan, "kl": math.nan}  # of the last step not skipped

    def update(self, losses: dict[str, float] | None, beta: float, lr: float, rate: float) -> None:
        """Show the step just counted (``losses`` None: skipped) at ``rate`` molecules per second."""
        if losses is not None:
            self.last = losses
        st, last = self.state, self.last
        self.bar.update(1)
        if st["global_step"] % 10 == 0:
            self.bar.set_postfix(
                loss=f"{last['loss']:.2f}", kl=f"{last['kl']:.1f}", beta=f"{beta:.3f}", mol_s=f"{rate:.0f}"
            )
        if self.log_lines and time.monotonic() - self.last_log > 60:
            self.last_log = time.monotonic()
            self.echo(
                f"epoch {st['epoch'] + 1}/{self.cfg.epochs} step {st['step_in_epoch']}/{self.n_batches} "
                f"loss {last['loss']:.3f} kl {last['kl']:.2f} beta {beta:.3f} lr {lr:.2e} {rate:.0f} mol/s"
            )

    def close(self) -> None:
        self.bar.close()


def epoch_means(state: dict[str, Any], steps_per_epoch: int, total_steps: int, cfg: TrainConfig) -> dict[str, float]:
    """The training columns of an epoch's metrics row: mean losses, final β and LR, molecules per second."""
    sums, step = state["partial"], state["global_step"]
    n = max(1, sums["n"])
    return {
        "train_loss": sums["loss"] / n,
        "train_recon": sums["recon"] / n,
        "train_kl": sums["kl"] / n,
        "beta": kl_beta(step, steps_per_epoch, total_steps, cfg),
        "lr": learning_rate(max(0, step - 1), total_steps, cfg),
        "train_mol_per_s": sums["mol"] / max(1e-9, sums["seconds"]),
    }


def close_epoch(state: dict[str, Any], row: dict[str, Any]) -> None:
    """Record the epoch's ``row``, count epochs without improvement (early stopping) and open the next epoch."""
    state["history"].append(row)
    val = row.get("val_loss", row["train_loss"])
    if val < state["best_val"] - 1e-6:
        state["best_val"] = val
        state["bad_epochs"] = 0
    else:
        state["bad_epochs"] += 1
    state["epoch"] += 1
    state["step_in_epoch"] = 0
    state["partial"] = fresh_partial()


def format_row(row: dict[str, Any]) -> str:
    """An epoch's metrics row as one line: ``key=value``, floats to four significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
