"""``molvae info``: what a model is and how it was made.

Representation and vocabulary, architecture, parameters, the weights' SHA-256, the
training data, epochs, hardware and parent, and the last epoch's validation figures,
for a bundled model (from its model card) or a run directory of ``molvae train``
(from its config.json, metrics.csv, data_summary.json and run_info.json).
``--json`` prints the same as one JSON object (``MolVAE.summary()`` from Python).
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from molvae.cli.commands import add_command
from molvae.model import available_pretrained

#: The last epoch's figures shown, in order, with their labels.
METRICS = (
    ("val_token_acc", "validation token accuracy"),
    ("val_exact_recon", "exact reconstruction"),
    ("prior_validity", "prior validity"),
    ("prior_uniqueness", "uniqueness"),
    ("prior_novelty", "novelty"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "info", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        default="zinc-smiles",
        help="model directory written by `molvae train`, or a bundled model: "
        f"{', '.join(available_pretrained()) or 'none'} (default zinc-smiles)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the description")
    p.set_defaults(func=run)


def _number(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def describe(summary: dict[str, Any]) -> list[str]:
    """The lines ``molvae info`` prints for :meth:`MolVAE.summary`'s dict."""
    model, training, metrics = summary["model"], summary["training"], summary["metrics"]
    arch = model["architecture"]
    where = f"bundled with molvae; {model['source']}" if model["bundled"] else model["source"]
    lines = [f"{model['name'] or model['source']}  ({where})"]
    rows = [
        (
            "representation",
            f"{model['representation'].upper()}, {model['vocab_size']} tokens, "
            f"{'with' if model['stereo'] else 'no'} stereochemistry, at most {model['max_length']} tokens",
        ),
        (
            "architecture",
            f"embedding {arch['embedding_dim']}, bidirectional GRU encoder {arch['encoder_hidden']}"
            f"{'' if arch['encoder_layers'] == 1 else ' x' + str(arch['encoder_layers'])}, "
            f"latent {arch['latent_dim']}, GRU decoder {arch['decoder_layers']}x{arch['decoder_hidden']}",
        ),
        ("parameters", f"{model['parameters']:,}"),
        ("weights", f"sha256 {model['weights_sha256']}" if model["weights_sha256"] else "not from a file"),
    ]
    data = training.get("data_summary") or {}
    if training.get("data") is not None:
        # A bundled model's card describes its data in words, counts included.
        counts = (
            f": {data['n_read']:,} read, {data['n_kept']:,} kept"
            if not model["bundled"] and "n_read" in data and "n_kept" in data
            else ""
        )
        rows.append(("training data", f"{training['data']}{counts}"))
    planned = training.get("epochs_planned")
    text = f"{training['epochs']}" + (f" of {planned} planned" if planned is not None else "") + " epochs"
    if training.get("steps") is not None:
        text += f", {training['steps']:,} steps"
    if training.get("hours") is not None:
        text += f", {training['hours']:.2f} h"
    if training.get("hardware"):
        text += f" on {training['hardware']}"
    if training.get("parent"):
        text += f"; fine-tuned from {training['parent']}"
    rows.append(("training", text))
    if planned is not None and training["epochs"] < planned and training.get("resumable"):
        rows.append(("", f"unfinished: `molvae train --out {model['source']} --resume` continues it"))
    if metrics:
        shown = [f"{label} {_number(metrics.get(key))}" for key, label in METRICS if key in metrics]
        rows.append(("last epoch", ", ".join(shown)))
    rows.append(("priors", _priors(summary.get("priors") or {"default": "standard", "stored": {}})))
    width = max(len(name) for name, _ in rows)
    lines += [f"  {name:<{width}}  {text}" for name, text in rows]
    return lines


def _priors(priors: dict[str, Any]) -> str:
    parts = []
    for name, meta in [("standard", {"kind": "standard"}), *priors["stored"].items()]:
        text = name if meta["kind"] == name else f"{name} ({meta['kind']})"
        fit = meta.get("fit") or {}
        if meta["kind"] != "standard":
            text += f" over {meta['active_dimensions']} dimensions"
            if fit.get("molecules"):
                text += f", fitted to {fit['molecules']:,} molecules of {fit.get('data', 'unknown data')}"
        parts.append(text + (" [default]" if name == priors["default"] else ""))
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    from molvae.model import MolVAE

    summary = MolVAE.load(args.model, device="cpu").summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print("\n".join(describe(summary)))
    return 0
