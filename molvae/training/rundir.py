"""A run directory read and written: the settings a run starts or resumes with, its resume state and
``metrics.csv``.

``resume.pt`` holds the weights, the optimizer, the RNG states and the loop's state (read with
``weights_only=True``); with the batch order and the schedules pure functions of seed, epoch and
step, a resumed run continues exactly where the checkpoint was taken.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any

import torch

from molvae.checkpoint import atomic_write_text, read_json, save_state
from molvae.errors import ConfigError, MolvaeError
from molvae.folders import CONFIG_FILE, RESUME_FILE, VOCAB_FILE
from molvae.model import ModelConfig
from molvae.training.config import RESUME_MAY_CHANGE, TrainConfig, check_resume_config


def new_run_config(
    out: Path, train_config: TrainConfig | None, model_config: dict[str, Any] | None
) -> tuple[TrainConfig, dict[str, Any]]:
    """A new run's settings and architecture options, checked; ``out`` must not hold a run yet."""
    if (out / RESUME_FILE).exists() or (out / CONFIG_FILE).exists():
        raise MolvaeError(f"{out} already holds a run; continue it with --resume or choose another --out")
    cfg = (train_config or TrainConfig()).validate()
    model_overrides = dict(model_config or {})
    # Checked now with a stand-in vocabulary size, not after minutes of data preparation.
    ModelConfig.from_dict(
        {"vocab_size": 5, "max_length": cfg.max_tokens, **model_overrides, "representation": cfg.representation}
    )
    return cfg, model_overrides


def _read_run_config(out: Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The training settings and the architecture saved in ``out``'s ``config.json``."""
    if not (out / CONFIG_FILE).is_file():
        raise MolvaeError(f"{out}: nothing to resume (no {CONFIG_FILE}); start a new run without --resume")
    saved = read_json(out / CONFIG_FILE, "run config")
    if not (isinstance(saved, dict) and isinstance(saved.get("model"), dict) and "training" in saved):
        raise MolvaeError(f"{out / CONFIG_FILE}: not a molvae run config (needs 'model' and 'training')")
    try:
        cfg = TrainConfig.from_dict(saved.get("training"))
    except ConfigError as exc:  # name the file: the user has to edit it (or start over)
        raise ConfigError(f"{out / CONFIG_FILE}: {exc}") from None
    return cfg, saved["model"]


def resumed_config(
    out: Path,
    train_config: TrainConfig | None,
    model_config: dict[str, Any] | None,
    epochs_override: int | None,
    overrides: dict[str, Any] | None,
    option_names: dict[str, str] | None,
) -> tuple[TrainConfig, TrainConfig, dict[str, Any]]:
    """The settings a resumed run continues with, the ones it was saved with, and its architecture.

    Settings given with the resume must match the saved ones (:func:`check_resume_config`),
    except the fields in :data:`RESUME_MAY_CHANGE`, which are applied.
    """
    cfg, model = _read_run_config(out)
    given = {k: v for k, v in (train_config.to_dict() if train_config else {}).items() if k != "progress"}
    given.update(overrides or {})
    if epochs_override is not None:
        given["epochs"] = epochs_override
    # Against the parsed config: a field missing from an older config.json has its default.
    check_resume_config(out, {"training": cfg.to_dict(), "model": model}, given, model_config, option_names)
    saved_cfg = dataclasses.replace(cfg)
    for k in RESUME_MAY_CHANGE:
        if k in given:
            setattr(cfg, k, given[k])
    if train_config is not None:
        cfg.progress = train_config.progress
    return cfg.validate(), saved_cfg, model


def remove_stale_temp_files(out: Path) -> None:
    """Delete the temp files of writes a kill interrupted; their targets are intact."""
    for stale in out.glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def save_resume_state(
    path: Path, net: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, state: dict[str, Any]
) -> None:
    """Write ``resume.pt``: weights, optimizer, RNG states and the loop's ``state``."""
    save_state(
        path,
        {
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            # The reparameterization noise and word dropout draw from the GPU's generator.
            **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
            "state": state,
        },
    )


def check_resume_state(where: Path, saved: Any, net: torch.nn.Module, vocab_size: int) -> None:
    """A resume state must hold every part and fit the network that config.json and vocab.json describe."""
    missing = [k for k in ("model", "optimizer", "torch_rng", "state") if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise MolvaeError(f"{where}: not a molvae resume state (missing {', '.join(missing)})")
    expected = net.state_dict()
    absent = sorted(set(expected) - set(saved["model"]))
    extra = sorted(set(saved["model"]) - set(expected))
    if absent or extra:
        raise MolvaeError(f"{where}: weights do not match {CONFIG_FILE} (missing {absent[:3]}, unexpected {extra[:3]})")
    for key, tensor in saved["model"].items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            hint = (
                f" (vocabulary mismatch: {VOCAB_FILE} has {vocab_size} tokens)"
                if key in ("embedding.weight", "output.weight", "output.bias")
                else ""
            )
            raise MolvaeError(
                f"{where}: {key} has shape {tuple(tensor.shape)}, but {CONFIG_FILE} and "
                f"{VOCAB_FILE} imply {tuple(expected[key].shape)}{hint}"
            )


def restore_resume_state(
    where: Path,
    saved: Any,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    vocab_size: int,
) -> dict[str, Any]:
    """Load a checked resume state into ``net``, ``optimizer`` and the RNGs; returns the loop's state."""
    check_resume_state(where, saved, net, vocab_size)
    net.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["torch_rng"])
    if "cuda_rng" in saved and device.type == "cuda":
        torch.cuda.set_rng_state(saved["cuda_rng"], device)
    return saved["state"]


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """Write ``metrics.csv`` atomically: one row per epoch, the columns of every row in first-seen order."""
    fields: list[str] = []
    for row in history:
        fields.extend(k for k in row if k not in fields)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buf.getvalue())
