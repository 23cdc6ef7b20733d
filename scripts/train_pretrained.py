"""Retrain a bundled pretrained model from scratch with its shipped recipe, and export it.

The recipe is the ``training`` and ``model`` sections of the bundled model's
``config.json`` (``molvae/resources/pretrained/<name>/``), so a retrain uses exactly
the configuration that produced the shipped weights::

    python scripts/train_pretrained.py zinc-smiles --out runs/zinc-smiles            # train (resumable)
    python scripts/train_pretrained.py zinc-smiles --out runs/zinc-smiles --resume   # after a kill
    python scripts/train_pretrained.py zinc-smiles --out runs/zinc-smiles --export-only --dest DIR

``--epochs`` overrides the recipe's epoch count (e.g. a longer GPU run). A bundled model
that was fine-tuned from an earlier one (``init_from`` in its recipe) is rebuilt in two
stages: the parent's from-scratch recipe, kept in the model card, into ``OUT/stage1``,
then the fine-tuning run from it into ``OUT``; an interrupted stage resumes. After training,
the model is exported (weights in float16, config with a ``card`` section: data, time,
hardware) to ``--dest`` (default: a ``export/`` folder inside ``--out``; pass
``--dest molvae/resources/pretrained/<name>`` to replace the bundled model).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch

from molvae.checkpoint import hardware_description, read_json
from molvae.model import CONFIG_FILE, MolVAE, pretrained_dir
from molvae.training import TrainConfig, Trainer


def recipe(name: str) -> tuple[dict, dict]:
    """(training config dict, architecture dict) of a bundled model."""
    raw = read_json(pretrained_dir() / name / CONFIG_FILE, "pretrained config")
    arch = {k: v for k, v in raw["model"].items() if k not in ("vocab_size", "representation")}
    return raw["training"], arch


def stages(name: str) -> list[dict]:
    """Training configs to run in order: one, or two when the bundled model was fine-tuned from an earlier one."""
    raw = read_json(pretrained_dir() / name / CONFIG_FILE, "pretrained config")
    training = raw["training"]
    if not training.get("init_from"):
        return [training]
    card = raw.get("card") or {}
    parent = (card.get("initialized_from") or {}).get("training")
    if not isinstance(parent, dict) or parent.get("init_from"):
        raise SystemExit(
            f"{name} was fine-tuned from {training['init_from']}, but its card holds no "
            "from-scratch recipe for that parent"
        )
    return [parent, training]


def export(run: Path, dest: Path, name: str) -> Path:
    """Write the run's model to ``dest`` in float16 with a model card section in config.json."""
    model = MolVAE.load(run)
    raw = read_json(run / CONFIG_FILE, "model config")
    metrics = pd.read_csv(run / "metrics.csv")
    last = metrics.iloc[-1].to_dict()
    summary = read_json(run / "data_summary.json", "data summary") if (run / "data_summary.json").exists() else {}
    info = read_json(run / "run_info.json", "run info") if (run / "run_info.json").exists() else {}
    card = {
        "name": name,
        "training_data": (
            f"MOSES training split (molsets==0.3.1 train.csv.gz): {summary.get('n_kept', 0):,} "
            f"molecules kept of {summary.get('n_read', 0):,} read"
        ),
        "data_summary": summary,
        "epochs": int(last["epoch"]),
        "steps": int(last["step"]),
        "training_hours": round(float(last["elapsed_s"]) / 3600, 2),
        "hardware": info.get("hardware", "unknown"),
        "final_epoch_metrics": {k: (None if pd.isna(v) else v) for k, v in last.items()},
        "trained_with": {k: info.get(k) for k in ("versions", "git_commit", "platform")},
        "weights_dtype": "float16",
    }
    parent = info.get("init_from")
    if parent:
        # A fine-tuned run: its own epochs above, the parent's training and the totals here.
        card["initialized_from"] = parent
        card["total_epochs"] = card["epochs"] + int(parent.get("epochs") or 0)
        card["total_training_hours"] = round(card["training_hours"] + float(parent.get("training_hours") or 0), 2)
    model.save(dest, {"training": raw.get("training"), "card": card}, weights_dtype=torch.float16)
    size = (dest / "model.safetensors").stat().st_size
    print(f"exported {run} -> {dest} ({size / 1e6:.1f} MB weights, float16)")
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=["zinc-smiles", "zinc-selfies"])
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="override the recipe's max_steps (0: no cap, train all --epochs)"
    )
    parser.add_argument("--export-only", action="store_true", help="skip training; export the run in --out")
    parser.add_argument("--dest", default=None, help="export folder (default: OUT/export)")
    parser.add_argument(
        "--device",
        default="auto",
        help="where to train (auto, cpu, cuda): the recipe records where it ran, not where to rerun it",
    )
    args = parser.parse_args()

    out = Path(args.out)
    if not args.export_only:
        _, arch = recipe(args.name)
        plan = stages(args.name)
        start = time.perf_counter()
        for k, training in enumerate(plan):
            last = k == len(plan) - 1
            # A fine-tuned model: the parent is trained from scratch in OUT/stage1 first.
            run = out if last else out / f"stage{k + 1}"
            training = {**training, "device": args.device}
            if k > 0:
                training["init_from"] = str(out / f"stage{k}")
            if last and args.epochs is not None:
                training["epochs"] = args.epochs
            if last and args.max_steps is not None:
                training["max_steps"] = args.max_steps or None
            if (run / CONFIG_FILE).exists() and (args.resume or not last):
                Trainer(run, resume=True, epochs_override=args.epochs if last else None, echo=print).fit()
            else:
                Trainer(
                    run, TrainConfig.from_dict(training), None if training.get("init_from") else arch, echo=print
                ).fit()
        print(f"trained in {(time.perf_counter() - start) / 3600:.2f} h on {hardware_description()}")
    export(out, Path(args.dest) if args.dest else out / "export", args.name)
    os.sync()


if __name__ == "__main__":
    main()
