"""The training loop: :class:`~molvae.training.Trainer` builds a run (or resumes one) and trains it epoch by epoch;
:func:`~molvae.train` is the one-call form.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from molvae.checkpoint import RunLock, environment_info, load_state, lock_run_dir, read_json, write_json
from molvae.datasets import train_val_split
from molvae.devices import resolve_dtype
from molvae.folders import CONFIG_FILE, DATA_SUMMARY_FILE, METRICS_FILE, RESUME_FILE, RUN_INFO_FILE, VOCAB_FILE
from molvae.model import MolVAE
from molvae.runtime import tune_allocator
from molvae.schedules import kl_beta, learning_rate
from molvae.tokenizers import Vocabulary
from molvae.training.config import TrainConfig, TrainingInterrupted, changed_on_resume
from molvae.training.cudagraphs import make_train_step
from molvae.training.distributed import (
    all_ranks_agree,
    barrier,
    check_replicas_in_sync,
    from_main,
    init_distributed,
    training_device,
)
from molvae.training.epochs import (
    EpochProgress,
    close_epoch,
    count_step,
    epoch_batches,
    epoch_means,
    format_row,
    new_state,
    plan_steps,
)
from molvae.training.preparation import build_network, load_parent, load_run_data, parent_summary, run_model_config
from molvae.training.rundir import (
    new_run_config,
    remove_stale_temp_files,
    restore_resume_state,
    resumed_config,
    save_resume_state,
    write_metrics,
)
from molvae.training.signals import SignalFlag
from molvae.training.steps import batch_tensors, make_optimizer
from molvae.training.validation import validate_network

log = logging.getLogger(__name__)


class Trainer:
    """Trains a :class:`~molvae.model.SequenceVAE` into a run directory; ``resume=True`` continues one.

    On resume the run's ``config.json`` rules. A ``train_config``, ``model_config`` or
    ``overrides`` (training fields) given with it must match the saved settings, except the
    fields in ``RESUME_MAY_CHANGE`` (more epochs, another device...), which are applied
    and written back to ``config.json``. ``option_names`` names fields in that error as the
    caller's options (the CLI's flags).
    """

    def __init__(
        self,
        out: str | Path,
        train_config: TrainConfig | None = None,
        model_config: dict[str, Any] | None = None,
        resume: bool = False,
        epochs_override: int | None = None,
        overrides: dict[str, Any] | None = None,
        option_names: dict[str, str] | None = None,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
        echo: Callable[[str], None] | None = None,
    ):
        self.out = Path(out)
        # User-facing messages (data summary, resume point, epoch results): the CLI prints them.
        self.echo = echo or log.info
        self.resume = resume
        self.on_epoch_end = on_epoch_end
        if resume:
            self.cfg, self._saved_cfg, self.model_overrides = resumed_config(
                self.out, train_config, model_config, epochs_override, overrides, option_names
            )
        else:
            self.cfg, self.model_overrides = new_run_config(self.out, train_config, model_config)
        self.dist = init_distributed(self.cfg.device)
        self.device = training_device(self.cfg.device, self.dist)
        self.dtype = resolve_dtype(self.cfg.precision, self.device)
        self._lock: RunLock | None = None  # taken in _build (rank 0)
        if not self.dist.is_main:
            self.echo = lambda message: None

    def _write_json(self, name: str, obj: Any) -> None:
        if self.dist.is_main:
            write_json(self.out / name, obj)

    def _write_config(self) -> None:
        self._write_json(CONFIG_FILE, {"model": self.model_config.to_dict(), "training": self.cfg.to_dict()})

    # -- setup
    def _build(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        # Only rank 0 writes the run; two processes checkpointing one run would lose work.
        self._lock = lock_run_dir(self.out) if self.dist.is_main else None
        # A resumed run's weights are in resume.pt: the parent is only read to start from it.
        starting = not (self.resume and (self.out / RESUME_FILE).is_file())
        parent = load_parent(self.cfg, self.model_overrides, self.resume) if starting else None
        n_kept = self._prepare_data(parent)
        self.net = build_network(self.model_config, self.cfg.seed, parent, self.device)
        self.optimizer = make_optimizer(self.net, self.cfg)
        self.steps_per_epoch, self.total_steps = plan_steps(self.train_data, n_kept, self.cfg, self.dist.world_size)
        self.state = new_state()
        self._start_or_restore(parent)

    def _prepare_data(self, parent: MolVAE | None) -> int:
        """Load and split the data, and settle the vocabulary and the network's configuration; returns len(data)."""
        vocab = parent.vocab if parent is not None else None
        if self.resume:
            remove_stale_temp_files(self.out)
            vocab = Vocabulary.from_dict(read_json(self.out / VOCAB_FILE, "vocabulary"))
        # With a parent, molecules holding a token it never saw are dropped and counted.
        data, self.summary = load_run_data(self.cfg, vocab, self.dist)
        self.echo(self.summary.format())
        self._write_json(DATA_SUMMARY_FILE, self.summary.to_dict())
        self.vocab = data.vocab
        self.model_config = run_model_config(self.cfg, self.model_overrides, len(self.vocab), parent)
        train_idx, val_idx = train_val_split(len(data), self.cfg.val_fraction, self.cfg.seed)
        self.train_data = data.subset(train_idx)
        self.val_data = data.subset(val_idx)
        self.all_smiles = set(data.smiles)
        return len(data)

    def _start_or_restore(self, parent: MolVAE | None) -> None:
        """Write a new run's files, or restore a resumed run from its checkpoint if it has one."""
        if not self.resume:
            self._write_json(VOCAB_FILE, self.vocab.to_dict())
            self._write_config()
            info = {**environment_info(), "world_size": self.dist.world_size}
            if parent is not None:
                info["init_from"] = parent_summary(parent, self.cfg.init_from)
            self._write_json(RUN_INFO_FILE, info)
        elif (self.out / RESUME_FILE).is_file():
            self.state = restore_resume_state(
                self.out / RESUME_FILE,
                load_state(self.out / RESUME_FILE),
                self.net,
                self.optimizer,
                self.device,
                len(self.vocab),
            )
            self.echo(
                f"resumed from {self.out / RESUME_FILE}: epoch {self.state['epoch'] + 1}, "
                f"step {self.state['step_in_epoch']} of {self.steps_per_epoch}"
            )
        else:
            self.echo(f"{self.out}: no {RESUME_FILE} yet; starting this run from the beginning")
        if self.resume and changed_on_resume(self._saved_cfg, self.cfg):
            self._write_config()

    def _checkpoint(self) -> None:
        if self.dist.is_main:
            save_resume_state(self.out / RESUME_FILE, self.net, self.optimizer, self.device, self.state)

    # -- loop
    def fit(self) -> list[dict[str, Any]]:
        """Train to the configured number of epochs (or early stop); returns the metrics history."""
        cfg = self.cfg
        # Handlers first: a signal during data preparation must also end in a clean stop.
        try:
            with SignalFlag() as flag:
                self._build()
                self.step = make_train_step(self.net, self.optimizer, self.dtype, cfg, self.dist.world_size)
                # An epoch stopped after its last step (a signal, a kill during validation) is still
                # open (step_in_epoch > 0): it is closed (validated, saved) before the run ends.
                while self.state["epoch"] < cfg.epochs and (
                    self.state["global_step"] < self.total_steps or self.state["step_in_epoch"] > 0
                ):
                    stopped = self._train_epoch(flag)
                    if stopped:
                        self._checkpoint()
                        raise TrainingInterrupted(
                            f"interrupted by signal {flag.received}; checkpoint saved in {self.out} at epoch "
                            f"{self.state['epoch'] + 1} step {self.state['step_in_epoch']}; continue with --resume"
                        )
                    row = self._end_epoch()
                    if self.on_epoch_end is not None:
                        self.on_epoch_end(row)
                    if cfg.early_stopping_patience and self.state["bad_epochs"] >= cfg.early_stopping_patience:
                        self.echo(
                            f"early stopping: validation loss did not improve for {self.state['bad_epochs']} epochs"
                        )
                        break
            barrier(self.dist)
        finally:
            # Not left to garbage collection: another process may resume this run as soon as fit returns.
            if self._lock is not None:
                self._lock.release()
        return self.state["history"]

    def _train_epoch(self, flag: SignalFlag) -> bool:
        """Train the rest of the current epoch; True if a signal stopped it (the epoch then stays open)."""
        cfg, st = self.cfg, self.state
        batches = epoch_batches(self.train_data, cfg, st["epoch"], self.dist, self.steps_per_epoch)
        self.net.train()
        # The epoch's running sums live in the state, so that an epoch resumed mid-way reports its whole means.
        sums = st["partial"]
        # Training time is banked at every checkpoint, so a resumed run reports its whole cost.
        banked = time.perf_counter()
        last_ckpt = time.monotonic()
        bad_run = 0
        progress = EpochProgress(len(batches), st, cfg, self.dist.is_main, self.echo)
        for index in batches[st["step_in_epoch"] :]:
            if st["global_step"] >= self.total_steps:  # --max-steps reached inside this epoch
                break
            beta, lr, losses = self._take_step(index)
            bad_run = count_step(st, losses, len(index), self.dist.world_size, bad_run, self.out / RESUME_FILE)
            rate = sums["mol"] / max(1e-9, sums["seconds"] + time.perf_counter() - banked)
            progress.update(losses, beta, lr, rate)
            # Ranks stop together: a signal to any rank stops all at the same step.
            if all_ranks_agree(flag.received is not None, self.dist):
                progress.close()
                self._bank_time(banked)
                return True
            if time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60:
                banked = self._bank_time(banked)
                self._checkpoint()
                last_ckpt = time.monotonic()
        progress.close()
        self._bank_time(banked)
        self._epoch_train = epoch_means(st, self.steps_per_epoch, self.total_steps, cfg)
        return False

    def _take_step(self, index: np.ndarray) -> tuple[float, float, dict[str, float] | None]:
        """One optimizer step on the batch ``index`` at the scheduled β and LR; returns β, LR and the losses."""
        step = self.state["global_step"]
        seq, lengths = batch_tensors(self.train_data, index, self.device)
        beta = kl_beta(step, self.steps_per_epoch, self.total_steps, self.cfg)
        lr = learning_rate(step, self.total_steps, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return beta, lr, self.step(seq, lengths, beta)

    def _bank_time(self, since: float) -> float:
        """Add the training time since ``since`` to the run's and the epoch's totals; returns now."""
        now = time.perf_counter()
        self.state["elapsed"] += now - since
        self.state["partial"]["seconds"] += now - since
        return now

    def _end_epoch(self) -> dict[str, Any]:
        """Validate, record and save the epoch just trained; returns its metrics row."""
        st = self.state
        row: dict[str, Any] = {"epoch": st["epoch"] + 1, "step": st["global_step"], **self._epoch_train}
        if self.dist.is_main:
            row.update(self.validate())
        row["skipped_steps"] = st["skipped_steps"]
        row["elapsed_s"] = st["elapsed"]
        if self.dist.enabled:
            check_replicas_in_sync(self.net, self.dist)
            # Every rank takes rank 0's validated row, so early stopping is decided alike.
            row = from_main(row)
        close_epoch(st, row)
        # Inference weights first, then the resume state: a kill in between resumes
        # from the previous epoch and rewrites both.
        if self.dist.is_main:
            MolVAE(self.net, self.vocab, device=self.device).save(self.out, {"training": self.cfg.to_dict()})
            write_metrics(self.out / METRICS_FILE, st["history"])
        self._checkpoint()
        self.echo(format_row(row))
        return row

    def validate(self) -> dict[str, float]:
        """Validation loss, token accuracy, active latent units, exact reconstruction and prior-sample
        validity/uniqueness."""
        beta = kl_beta(self.state["global_step"], self.steps_per_epoch, self.total_steps, self.cfg)
        return validate_network(
            self.net,
            self.vocab,
            self.val_data,
            self.all_smiles,
            self.cfg,
            self.dtype,
            self.device,
            beta,
            self.state["epoch"],
        )


def train(
    out: str | Path,
    train_config: TrainConfig | None = None,
    model_config: dict[str, Any] | None = None,
    resume: bool = False,
    epochs_override: int | None = None,
) -> MolVAE:
    """Train (or resume) a run and return the trained model.

    On resume, a ``train_config`` or ``model_config`` given must match the saved run, except
    the fields in ``RESUME_MAY_CHANGE`` (see :class:`~molvae.training.Trainer`).

    Tunes the process's memory allocator first (``molvae.runtime.tune_allocator``).
    """
    tune_allocator()
    trainer = Trainer(out, train_config, model_config, resume=resume, epochs_override=epochs_override)
    trainer.fit()
    return MolVAE(trainer.net.eval(), trainer.vocab, device=trainer.device)
