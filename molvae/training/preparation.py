"""What a run is built from: its data, the parent model of a fine-tuning run, and the network.

The network's configuration comes from the run's settings and the data's vocabulary, or, when
fine-tuning, from the parent model, whose architecture and vocabulary the run keeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from molvae.checkpoint import read_json
from molvae.datasets import DataSummary, TokenizedData, load_dataset
from molvae.errors import ConfigError
from molvae.folders import CONFIG_FILE
from molvae.model import ModelConfig, MolVAE, SequenceVAE
from molvae.tokenizers import Vocabulary
from molvae.training.config import TrainConfig
from molvae.training.distributed import DistributedContext, barrier


def load_run_data(
    cfg: TrainConfig, vocab: Vocabulary | None, ctx: DistributedContext
) -> tuple[TokenizedData, DataSummary]:
    """The run's molecules, tokenized with ``vocab`` when given (a parent's or a resumed run's), and their summary."""

    def load() -> tuple[TokenizedData, DataSummary]:
        return load_dataset(
            cfg.data,
            representation=cfg.representation,
            column=cfg.smiles_column,
            max_tokens=cfg.max_tokens,
            limit=cfg.limit,
            vocab=vocab,
            sample=cfg.sample,
            sample_seed=cfg.seed,
        )

    # Rank 0 prepares (and caches) the data first; the other ranks then read the cache.
    if ctx.is_main:
        data, summary = load()
    barrier(ctx)
    if not ctx.is_main:
        data, summary = load()
    return data, summary


def load_parent(cfg: TrainConfig, model_overrides: dict[str, Any], resume: bool) -> MolVAE | None:
    """The model named by ``init_from``, checked against this run's settings (None without one)."""
    if cfg.init_from is None:
        return None
    parent = MolVAE.load(cfg.init_from, device="cpu")
    where = f"--init-from {cfg.init_from}"
    if parent.config.representation != cfg.representation:
        raise ConfigError(
            f"{where} is a {parent.config.representation} model; this run is set to "
            f"{cfg.representation} (pass --representation {parent.config.representation})"
        )
    if not resume:
        arch = parent.config.to_dict()
        differ = sorted(k for k, v in model_overrides.items() if arch.get(k) != v)
        if differ:
            raise ConfigError(
                f"{where} fixes the architecture; drop the options that change it: "
                + ", ".join(f"{k}={model_overrides[k]} (model: {arch.get(k)})" for k in differ)
            )
    return parent


def parent_summary(parent: MolVAE, name: str) -> dict[str, Any]:
    """What a fine-tuned run started from: name, folder, weights digest and the parent's training."""
    digest = parent.weights_sha256()
    card = parent.card or {}
    lineage = {k: card.get(k) for k in ("epochs", "steps", "training_hours", "hardware") if k in card}
    saved = read_json(Path(parent.source) / CONFIG_FILE, "model config") if parent.source else {}
    # The parent's own recipe, so that scripts/train_pretrained.py can redo both stages.
    if isinstance(saved, dict) and isinstance(saved.get("training"), dict):
        lineage["training"] = saved["training"]
    return {"model": name, "source": parent.source, "weights_sha256": digest, **lineage}


def run_model_config(
    cfg: TrainConfig, model_overrides: dict[str, Any], vocab_size: int, parent: MolVAE | None
) -> ModelConfig:
    """The network's configuration: the run's architecture options over the defaults, or the parent's."""
    model_dict = {**model_overrides, "vocab_size": vocab_size, "representation": cfg.representation}
    if parent is not None:
        model_dict = parent.config.to_dict()
        # The GRUs have no length limit: only the decoding cap follows longer training data.
        model_dict["max_length"] = max(parent.config.max_length, cfg.max_tokens)
    model_dict.setdefault("max_length", cfg.max_tokens)
    return ModelConfig.from_dict(model_dict)


def build_network(config: ModelConfig, seed: int, parent: MolVAE | None, device: torch.device) -> SequenceVAE:
    """The network on ``device``: initialized from ``seed``, then given the parent's weights if there is one."""
    torch.manual_seed(seed)
    net = SequenceVAE(config)
    if parent is not None:
        net.load_state_dict(parent.net.state_dict())
    return net.to(device)
