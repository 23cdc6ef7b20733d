"""A training run's settings (:class:`TrainConfig`), which of them a resumed run may change, and
the errors that end a run early.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from molvae.config import config_from_dict, rule, validate_config
from molvae.errors import ConfigError, MolvaeError
from molvae.schedules import KL_SCHEDULES, LR_SCHEDULES


class TrainingInterrupted(MolvaeError):
    """SIGINT/SIGTERM arrived; a checkpoint was written and the run can be resumed."""


class TrainingDiverged(MolvaeError):
    """Loss or gradients stayed NaN/Inf; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything about a training run except the architecture."""

    data: str = "moses"
    smiles_column: str | None = None
    representation: str = field(default="smiles", metadata=rule(choices=("smiles", "selfies")))
    limit: int | None = field(default=None, metadata=rule(ge=1))  # the first N records
    sample: int | None = field(default=None, metadata=rule(ge=1))  # a random N records (seeded by seed)
    max_tokens: int = field(default=120, metadata=rule(ge=3))  # incl. BOS/EOS, so at least one real token
    val_fraction: float = field(default=0.05, metadata=rule(ge=0.0, lt=1.0))
    epochs: int = field(default=10, metadata=rule(ge=1))
    batch_size: int = field(default=256, metadata=rule(ge=1))
    lr: float = field(default=1e-3, metadata=rule(gt=0.0))
    lr_schedule: str = field(default="cosine", metadata=rule(choices=tuple(LR_SCHEDULES)))  # after linear warm-up
    # Linear LR warm-up; a run of fewer than twice as many steps warms up over its first half.
    warmup_steps: int = field(default=100, metadata=rule(ge=0))
    min_lr_ratio: float = field(default=0.05, metadata=rule(ge=0.0, le=1.0))
    weight_decay: float = field(default=1e-4, metadata=rule(ge=0.0))
    grad_clip: float = field(default=5.0, metadata=rule(gt=0.0))
    kl_schedule: str = field(default="linear", metadata=rule(choices=tuple(KL_SCHEDULES)))
    kl_weight: float = field(default=0.5, metadata=rule(ge=0.0))  # β at the end of annealing
    # linear: epochs to reach kl_weight (at most the whole run, so a short run still reaches it)
    kl_warmup_epochs: float = field(default=2.0, metadata=rule(ge=0.0))
    kl_cycles: int = field(default=4, metadata=rule(ge=1))  # cyclical: cycles over the run (Fu et al. 2019)
    free_bits: float = field(default=0.0, metadata=rule(ge=0.0))  # nats per latent dimension (Kingma et al. 2016)
    word_dropout: float = field(default=0.0, metadata=rule(ge=0.0, lt=1.0))
    precision: str = field(default="auto", metadata=rule(choices=("auto", "bf16", "fp32")))
    device: str = "auto"
    seed: int = 0
    val_max: int = field(default=10_000, metadata=rule(ge=0))  # molecules used for validation loss/accuracy
    val_recon_n: int = field(default=500, metadata=rule(ge=0))
    val_sample_n: int = field(default=500, metadata=rule(ge=0))
    early_stopping_patience: int | None = field(default=None, metadata=rule(ge=1))
    # stop after this many optimizer steps; the LR and KL schedules span them
    max_steps: int | None = field(default=None, metadata=rule(ge=1))
    checkpoint_minutes: float = field(default=10.0, metadata=rule(gt=0.0))
    # Replay training steps from CUDA graphs (one per batch width) on a single GPU.
    cuda_graphs: bool = True
    # Fine-tuning: start from this model's weights, architecture and vocabulary (a bundled
    # name such as "zinc-smiles" or a model directory) instead of a random initialization.
    init_from: str | None = None
    progress: bool = True

    def validate(self) -> TrainConfig:
        """Check types and ranges (``molvae.config.validate_config``); returns ``self``."""
        validate_config(self, "training config")
        if self.limit is not None and self.sample is not None:
            raise ConfigError("training config: give limit (first N records) or sample (random N records), not both")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """Build from parsed JSON; unknown fields and bad values raise :class:`~molvae.errors.ConfigError`."""
        return config_from_dict(cls, data, "training config")


# Settings a resumed run may change: stopping rules and where/how steps run, not what they
# compute. Everything else (data, split, architecture, optimizer, schedules) stays as saved.
RESUME_MAY_CHANGE = (
    "epochs",
    "max_steps",
    "early_stopping_patience",
    "checkpoint_minutes",
    "device",
    "precision",
    "cuda_graphs",
    "progress",
)


def check_resume_config(
    out: str | Path,
    saved: dict[str, Any],
    training: dict[str, Any],
    model: dict[str, Any] | None = None,
    names: dict[str, str] | None = None,
) -> None:
    """A one-line :class:`~molvae.errors.ConfigError` when settings given for a resume differ from the run's saved ones.

    ``saved`` is the run's ``config.json`` (``{"model": ..., "training": ...}``); ``training`` and
    ``model`` are the settings given with the resume. Values equal to the saved ones pass, so
    the original command with ``--resume`` added works; fields in ``RESUME_MAY_CHANGE``
    may differ. ``names`` shows a field under another name (the CLI's option) in the message.
    """
    names = names or {}
    changed = [
        f"{names.get(k, k)} {v!r} (the run has {saved['training'].get(k)!r})"
        for k, v in training.items()
        if k not in RESUME_MAY_CHANGE and saved["training"].get(k) != v
    ]
    changed += [
        f"{names.get(k, k)} {v!r} (the run has {saved['model'].get(k)!r})"
        for k, v in (model or {}).items()
        if saved["model"].get(k) != v
    ]
    if changed:
        may = ", ".join(names.get(k, k) for k in RESUME_MAY_CHANGE if k != "progress")
        raise ConfigError(
            f"{out}: a resumed run keeps the settings it was started with (only {may} may change); "
            f"got " + "; ".join(changed)
        )


def changed_on_resume(saved: TrainConfig, cfg: TrainConfig) -> bool:
    """Whether a resume changed a saved setting (more epochs, another device...)."""
    return any(getattr(saved, k) != getattr(cfg, k) for k in RESUME_MAY_CHANGE if k != "progress")
