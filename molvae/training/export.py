"""A run's latest weights as a model directory, also mid-epoch: what ``--init-from`` starts another run from.

An epoch's end writes ``model.safetensors``; the checkpoints between (``--checkpoint-minutes``,
a stop by signal) write only ``resume.pt``, which also holds the optimizer's state (three times
the weights). ``export_latest`` takes the newer of the two and writes the weights alone, in
float16 by default (half the size, as the bundled models), with a ``card`` saying where they came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from molvae.checkpoint import load_state, read_json
from molvae.folders import CONFIG_FILE, DATA_SUMMARY_FILE, RESUME_FILE, RUN_INFO_FILE, VOCAB_FILE, WEIGHTS_FILE
from molvae.model import ModelConfig, MolVAE, SequenceVAE
from molvae.tokenizers import Vocabulary
from molvae.training.rundir import check_resume_state


def latest_model(run: str | Path) -> tuple[MolVAE, dict[str, Any]]:
    """The run's latest weights (``resume.pt`` if newer than ``model.safetensors``) and its loop state ({} if none)."""
    run = Path(run)
    resume, weights = run / RESUME_FILE, run / WEIGHTS_FILE
    if not resume.is_file() or (weights.is_file() and weights.stat().st_mtime_ns > resume.stat().st_mtime_ns):
        return MolVAE.load(run, device="cpu"), {}
    raw = read_json(run / CONFIG_FILE, "run config")
    vocab = Vocabulary.from_dict(read_json(run / VOCAB_FILE, "vocabulary"))
    net = SequenceVAE(ModelConfig.from_dict(raw["model"]))
    saved = load_state(resume)
    check_resume_state(resume, saved, net, len(vocab))
    net.load_state_dict(saved["model"])
    return MolVAE(net.eval(), vocab, device="cpu"), saved["state"]


def export_latest(
    run: str | Path, dest: str | Path, name: str, weights_dtype: torch.dtype = torch.float16
) -> dict[str, Any]:
    """Write the run's latest weights to the model directory ``dest``; returns the card written with them.

    The card records the run's completed epochs, its steps and hours so far, its hardware, its data
    and the model it was initialized from (keys as in the bundled models' cards, which
    :func:`molvae.training.preparation.parent_summary` reads), so a chain of runs (CPU, GPU
    session, CPU again) keeps its lineage.
    """
    run, dest = Path(run), Path(dest)
    model, state = latest_model(run)
    raw = read_json(run / CONFIG_FILE, "run config")
    info = read_json(run / RUN_INFO_FILE, "run info") if (run / RUN_INFO_FILE).is_file() else {}
    summary = read_json(run / DATA_SUMMARY_FILE, "data summary") if (run / DATA_SUMMARY_FILE).is_file() else {}
    history = state.get("history") or []
    card: dict[str, Any] = {
        "name": name,
        "exported_from": str(run),
        "data_summary": summary,
        "epochs": int(state.get("epoch", len(history))),  # completed; "steps" counts those of an open one too
        "steps": int(state.get("global_step", history[-1]["step"] if history else 0)),
        "training_hours": round(float(state.get("elapsed", 0.0)) / 3600, 3),
        "hardware": info.get("hardware", "unknown"),
        "trained_with": {k: info.get(k) for k in ("versions", "git_commit", "platform")},
        "last_epoch_metrics": history[-1] if history else None,
        "weights_dtype": str(weights_dtype).replace("torch.", ""),
    }
    if info.get("init_from"):
        card["initialized_from"] = info["init_from"]
    model.save(dest, {"training": raw.get("training"), "card": card}, weights_dtype=weights_dtype)
    return card
