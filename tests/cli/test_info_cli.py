"""``molvae info``: a model's description, from a bundled model card or a run directory."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from molvae.cli.main import main
from molvae.model import MolVAE


def test_info_describes_the_bundled_model(capsys) -> None:
    assert main(["info"]) == 0
    printed = capsys.readouterr().out
    model = MolVAE.pretrained("zinc-smiles", device="cpu")
    digest = hashlib.sha256((Path(model.source) / "model.safetensors").read_bytes()).hexdigest()
    assert printed.startswith("zinc-smiles  (bundled with molvae; ")
    assert f"SMILES, {len(model.vocab)} tokens, no stereochemistry, at most 120 tokens" in printed
    assert re.search(rf"\n  parameters +{model.n_parameters:,}\n", printed), printed
    assert f"sha256 {digest}" in printed
    card = model.card
    assert f"{card['total_epochs']} epochs, {card['steps']:,} steps" in printed
    assert f"exact reconstruction {card['final_epoch_metrics']['val_exact_recon']:.3f}" in printed


def test_info_of_a_run_directory_and_its_json(small_model_dir, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(small_model_dir, run)
    metrics = pd.read_csv(run / "metrics.csv")
    assert main(["info", "--model", str(run)]) == 0
    printed = capsys.readouterr().out
    data = json.loads((run / "data_summary.json").read_text())
    assert re.search(rf"\n  training data +moses: {data['n_read']:,} read, {data['n_kept']:,} kept\n", printed), printed
    last = metrics.iloc[-1]
    assert f"{int(last['epoch'])} of 4 planned epochs, {int(last['step']):,} steps" in printed
    assert f"prior validity {last['prior_validity']:.3f}" in printed
    assert "unfinished" not in printed

    # A run asked for more epochs than it has trained (as `--resume --epochs 6` would) says how to go on.
    config = json.loads((run / "config.json").read_text())
    config["training"]["epochs"] = 6
    (run / "config.json").write_text(json.dumps(config))
    assert main(["info", "--model", str(run)]) == 0
    assert f"unfinished: `molvae train --out {run} --resume` continues it" in capsys.readouterr().out

    assert main(["info", "--model", str(run), "--json"]) == 0

    def no_nan(name: str):
        raise AssertionError(f"{name} is not JSON")

    summary = json.loads(capsys.readouterr().out, parse_constant=no_nan)
    assert summary["model"]["weights_sha256"] == hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
    assert summary["training"]["epochs"] == int(last["epoch"]) and summary["training"]["epochs_planned"] == 6
    assert summary["training"]["resumable"] is (run / "resume.pt").is_file()
    assert summary["metrics"]["val_token_acc"] == pytest.approx(last["val_token_acc"])


def test_info_of_a_missing_model_is_a_one_line_error(tmp_path, capsys) -> None:
    assert main(["info", "--model", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "model directory not found" in err and len(err.splitlines()) == 1
