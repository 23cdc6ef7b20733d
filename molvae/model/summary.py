"""A model's record: what it is and how it was made (:meth:`.MolVAE.summary`, what ``molvae info`` prints),
from a bundled model's card or the files its training run left in its directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from molvae.checkpoint import read_json
from molvae.folders import CONFIG_FILE, DATA_SUMMARY_FILE, METRICS_FILE, RESUME_FILE, RUN_INFO_FILE
from molvae.priors.store import describe_priors


def describe_model(model: Any) -> dict[str, Any]:
    """What ``model`` (a :class:`~molvae.model.MolVAE`) is and how it was made: :meth:`.MolVAE.summary`."""
    cfg = model.config
    about = {
        "name": (model.card or {}).get("name"),
        "source": model.source,
        "bundled": model.card is not None,
        "representation": cfg.representation,
        "vocab_size": cfg.vocab_size,
        "stereo": model.has_stereo,
        "max_length": cfg.max_length,
        "architecture": cfg.to_dict(),
        "parameters": model.n_parameters,
        "weights_sha256": model.weights_sha256(),
    }
    priors = describe_priors(model.source)
    if model.card is not None:
        return {"model": about, **_card_record(model.card), "priors": priors}
    folder = Path(model.source) if model.source else None
    return {"model": about, **_run_record(folder), "priors": priors}


def _card_record(card: dict[str, Any]) -> dict[str, Any]:
    """``training`` and ``metrics`` of a bundled model, from its model card."""
    training = {
        "data": card.get("training_data"),
        "data_summary": card.get("data_summary"),
        "epochs": card.get("total_epochs", card.get("epochs")),
        "steps": card.get("steps"),
        "hours": card.get("total_training_hours", card.get("training_hours")),
        "hardware": card.get("hardware"),
        "parent": (card.get("initialized_from") or {}).get("model"),
    }
    return {"training": training, "metrics": card.get("final_epoch_metrics")}


def _run_record(folder: Path | None) -> dict[str, Any]:
    """``training`` and ``metrics`` of a model directory, from the files its training run left."""

    def read(name: str) -> Any:
        return read_json(folder / name, name) if folder is not None and (folder / name).is_file() else None

    config = read(CONFIG_FILE) or {}
    planned = config.get("training") if isinstance(config.get("training"), dict) else {}
    metrics = last_epoch_metrics(folder / METRICS_FILE) if folder is not None else None
    info = read(RUN_INFO_FILE) or {}
    training = {
        "data": planned.get("data"),
        "data_summary": read(DATA_SUMMARY_FILE),
        "epochs": int(metrics["epoch"]) if metrics else 0,
        "epochs_planned": planned.get("epochs"),
        "steps": int(metrics["step"]) if metrics else None,
        "hours": round(float(metrics["elapsed_s"]) / 3600, 2) if metrics and "elapsed_s" in metrics else None,
        "hardware": info.get("hardware"),
        "parent": (info.get("init_from") or {}).get("model"),
        "resumable": folder is not None and (folder / RESUME_FILE).is_file(),
    }
    return {"training": training, "metrics": metrics}


def last_epoch_metrics(path: Path) -> dict[str, Any] | None:
    """The last row of a training run's metrics.csv (None where there is none), NaN as None: JSON has no NaN."""
    if not path.is_file():
        return None

    rows = pd.read_csv(path)
    if not len(rows):
        return None
    return {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in rows.iloc[-1].items()}
