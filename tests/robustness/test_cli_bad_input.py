"""Every command answers bad input with one clear stderr line, a non-zero exit and no traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from molvae.cli.main import main
from molvae.model import ModelConfig, MolVAE, SequenceVAE
from molvae.tokenizers import SPECIAL_TOKENS, Vocabulary


@pytest.fixture
def model_dir(tmp_path):
    vocab = Vocabulary([*SPECIAL_TOKENS, "C", "O", "c", "1", "N", "(", ")", "="])
    torch.manual_seed(0)
    net = SequenceVAE(
        ModelConfig(
            vocab_size=len(vocab),
            embedding_dim=8,
            encoder_hidden=8,
            latent_dim=4,
            decoder_hidden=8,
            decoder_layers=1,
            max_length=20,
        )
    )
    d = tmp_path / "model"
    MolVAE(net, vocab, device="cpu").save(d)
    return d


def _files(tmp_path):
    bad = {}
    bad["empty.smi"] = tmp_path / "empty.smi"
    bad["empty.smi"].write_text("")
    bad["nocol.csv"] = tmp_path / "nocol.csv"
    bad["nocol.csv"].write_text("name,structure\nethanol,CCO\n")
    bad["latin1.smi"] = tmp_path / "latin1.smi"
    bad["latin1.smi"].write_bytes(b"CCO\nC\xe9C\n")
    bad["fake.csv.gz"] = tmp_path / "fake.csv.gz"
    bad["fake.csv.gz"].write_text("SMILES\nCCO\n")
    bad["semicolon.csv"] = tmp_path / "semicolon.csv"
    bad["semicolon.csv"].write_text("id;SMILES\n1;CCO\n")
    bad["directory"] = tmp_path / "adir"
    bad["directory"].mkdir()
    bad["missing.smi"] = tmp_path / "missing.smi"
    return bad


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    if os.environ.get("MOLVAE_ERROR_LOG"):  # collects what users see, for the docs
        with open(os.environ["MOLVAE_ERROR_LOG"], "a", encoding="utf-8") as fh:
            fh.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?').split(' ')[0]}\t{lines[0]}\n")
    return lines[0]


@pytest.mark.parametrize(
    "name, needles",
    [
        ("empty.smi", ["no molecules found"]),
        ("nocol.csv", ["columns found: name, structure"]),
        ("latin1.smi", ["not UTF-8"]),
        ("fake.csv.gz", ["not gzip"]),
        ("semicolon.csv", ["columns found: id;SMILES", "separated by ';'"]),
        ("directory", ["is a directory"]),
        ("missing.smi", ["no such file"]),
    ],
)
def test_train_bad_data_files(tmp_path, capsys, name, needles) -> None:
    path = _files(tmp_path)[name]
    code = main(["train", "--data", str(path), "--out", str(tmp_path / "run"), "--no-progress"])
    assert code != 0
    _one_line_error(capsys, str(path.name), *needles)


@pytest.mark.parametrize("command", ["encode", "reconstruct", "properties"])
@pytest.mark.parametrize("name", ["nocol.csv", "latin1.smi", "fake.csv.gz", "directory", "missing.smi"])
def test_file_commands_bad_inputs(tmp_path, capsys, model_dir, command, name) -> None:
    path = _files(tmp_path)[name]
    out = tmp_path / ("out.npy" if command == "encode" else "out.csv")
    args = [command, "--input", str(path), "--out", str(out)]
    if command != "properties":
        args += ["--model", str(model_dir)]
    assert main(args) == 2
    _one_line_error(capsys, path.name)
    assert not out.exists()


def test_resume_without_a_run(tmp_path, capsys) -> None:
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    _one_line_error(capsys, "nothing to resume")


def test_sample_rejects_zero(model_dir, tmp_path, capsys) -> None:
    assert main(["sample", "--model", str(model_dir), "--n", "0", "--out", str(tmp_path / "s.csv")]) == 2
    _one_line_error(capsys, "--n must be >= 1")


def test_model_with_missing_weights(model_dir, tmp_path, capsys) -> None:
    (model_dir / "model.safetensors").unlink()
    assert main(["sample", "--model", str(model_dir), "--n", "3", "--out", str(tmp_path / "s.csv")]) == 2
    _one_line_error(capsys, "model.safetensors", "weights file missing")


def test_bad_training_option(tmp_path, capsys) -> None:
    f = tmp_path / "m.smi"
    f.write_text("CCO\n")
    assert main(["train", "--data", str(f), "--out", str(tmp_path / "r"), "--kl-schedule", "sawtooth"]) == 2
    _one_line_error(capsys, "kl_schedule")


def test_debug_shows_traceback(tmp_path, capsys) -> None:
    assert main(["--debug", "properties", "--input", str(tmp_path / "none.smi"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "Traceback" in capsys.readouterr().err


# --------------------------------------------------------------------------- every command, every bad input
# Each case: the command line (with {model}, {file}, {tmp} filled in), then substrings the one
# error line must contain. Files come from _files() and _more_files().


def _more_files(tmp_path):
    bad = _files(tmp_path)
    bad["headeronly.csv"] = tmp_path / "headeronly.csv"
    bad["headeronly.csv"].write_text("smiles\n")
    bad["invalid.smi"] = tmp_path / "invalid.smi"
    bad["invalid.smi"].write_text("CCO\nC1CC(\n")
    bad["late-latin1.smi"] = tmp_path / "late-latin1.smi"
    bad["late-latin1.smi"].write_bytes(b"CCO\n" * 5000 + b"C\xe9C\n")  # past the first read-ahead buffer
    bad["nocol.smi"] = bad["nocol.csv"]
    return bad


FILE_CASES = {
    # name -> substrings besides the file name
    "empty.smi": ["no molecules found"],
    "headeronly.csv": ["no molecules found"],
    "nocol.csv": ["columns found: name, structure"],
    "latin1.smi": ["line 2", "not UTF-8"],
    "late-latin1.smi": ["line 5001", "not UTF-8"],
    "fake.csv.gz": ["not gzip"],
    "semicolon.csv": ["columns found: id;SMILES", "separated by ';'"],
    "directory": ["is a directory"],
    "missing.smi": ["no such file"],
}

FILE_COMMANDS = {
    "encode": "encode --model {model} --input {file} --out {tmp}/out.npy",
    "properties": "properties --input {file} --out {tmp}/out.csv",
    "reconstruct": "reconstruct --model {model} --input {file} --out {tmp}/out.csv",
    "evaluate --samples": "evaluate --samples {file} --reference {tmp}/ok.smi --train none --out {tmp}/ev",
    "evaluate --reference": "evaluate --samples {tmp}/ok.smi --reference {file} --train none --out {tmp}/ev",
    "evaluate --train": "evaluate --samples {tmp}/ok.smi --reference {tmp}/ok.smi --train {file} --out {tmp}/ev",
    "optimize --init": "optimize --model {model} --objective qed --init {file} --budget 2 --out {tmp}/opt "
    "--no-progress",
    "explore --train": "explore CCO --model {model} --train {file} --n 2 --out {tmp}/ex",
}


def _run(capsys, line: str, **fill) -> tuple[int, str]:
    args = [part.format(**fill) for part in line.split()]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return code, err


@pytest.mark.parametrize("command", list(FILE_COMMANDS))
@pytest.mark.parametrize("name", list(FILE_CASES))
def test_every_file_argument_rejects_bad_files(tmp_path, capsys, model_dir, command, name) -> None:
    path = _more_files(tmp_path)[name]
    (tmp_path / "ok.smi").write_text("CCO\nc1ccccc1O\nCC(=O)O\n")
    code, err = _run(capsys, FILE_COMMANDS[command], model=model_dir, file=path, tmp=tmp_path)
    assert code == 2, err
    for needle in [path.name, *FILE_CASES[name]]:
        assert needle in err, (needle, err)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.npy").exists()


def test_files_without_a_valid_molecule_are_refused_where_a_set_is_needed(tmp_path, capsys, model_dir) -> None:
    bad = tmp_path / "bad.smi"
    bad.write_text("C1CC(\nxyz\n")
    ok = tmp_path / "ok.smi"
    ok.write_text("CCO\nc1ccccc1O\n")
    code, err = _run(
        capsys, "evaluate --samples {ok} --reference {bad} --train none --out {tmp}/ev", ok=ok, bad=bad, tmp=tmp_path
    )
    assert code == 2 and "bad.smi" in err and "no valid molecule" in err
    code, err = _run(
        capsys, "evaluate --samples {ok} --reference {ok} --train {bad} --out {tmp}/ev", ok=ok, bad=bad, tmp=tmp_path
    )
    assert code == 2 and "bad.smi" in err and "training set has no valid molecule" in err
    code, err = _run(
        capsys, "explore CCO --model {model} --train {bad} --n 2 --out {tmp}/ex", model=model_dir, bad=bad, tmp=tmp_path
    )
    assert code == 2 and "bad.smi" in err and "no valid molecule" in err


MODEL_COMMANDS = {
    "sample": "sample --model {model} --n 2 --out {tmp}/s.csv",
    "encode": "encode --model {model} --input {tmp}/ok.smi --out {tmp}/e.npy",
    "reconstruct": "reconstruct --model {model} --input {tmp}/ok.smi --out {tmp}/r.csv",
    "evaluate": "evaluate --model {model} --n 2 --reference {tmp}/ok.smi --train none --out {tmp}/ev",
    "optimize": "optimize --model {model} --objective qed --budget 2 --out {tmp}/opt --no-progress",
    "interpolate": "interpolate CCO CCN --model {model} --steps 3 --attempts 1 --out {tmp}/ip",
    "explore": "explore CCO --model {model} --n 2 --out {tmp}/ex",
}


def _break_model(model_dir, how: str):
    import json

    if how == "missing directory":
        return model_dir.parent / "no-such-model", ["model directory not found"]
    if how == "weights missing":
        (model_dir / "model.safetensors").unlink()
        return model_dir, ["model.safetensors", "weights file missing"]
    if how == "weights truncated":
        data = (model_dir / "model.safetensors").read_bytes()
        (model_dir / "model.safetensors").write_bytes(data[: len(data) // 2])
        return model_dir, ["model.safetensors", "not a valid safetensors file"]
    if how == "vocabulary mismatch":
        vocab = json.loads((model_dir / "vocab.json").read_text())
        vocab["tokens"].append("Cl")
        (model_dir / "vocab.json").write_text(json.dumps(vocab))
        return model_dir, ["vocabulary mismatch", "13 tokens", "vocab_size=12"]
    if how == "a file":
        f = model_dir.parent / "model.txt"
        f.write_text("x")
        return f, ["expected a model directory"]
    raise AssertionError(how)


@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
@pytest.mark.parametrize(
    "how", ["missing directory", "weights missing", "weights truncated", "vocabulary mismatch", "a file"]
)
def test_every_model_command_refuses_a_broken_model(tmp_path, capsys, model_dir, command, how) -> None:
    (tmp_path / "ok.smi").write_text("CCO\nc1ccccc1O\n")
    model, needles = _break_model(model_dir, how)
    code, err = _run(capsys, MODEL_COMMANDS[command], model=model, tmp=tmp_path)
    assert code == 2, err
    for needle in [model.name, *needles]:
        assert needle in err, (needle, err)


# The tiny model's vocabulary: C O c 1 N ( ) =
MOLECULE_CASES = [
    ("C1CC(", ["'C1CC('", "neither a known drug name nor a valid SMILES"]),
    ("asprin", ["unknown drug name 'asprin'", "did you mean: aspirin"]),
    ("notadrug", ["unknown drug name 'notadrug'"]),
    ("C[Se]C", ["unknown token '[Se]'", "'C[Se]C'"]),  # an element the model never saw
    ("C[N+](C)(C)C", ["unknown token '[N+]'"]),  # a charge the model never saw
    ("CCCl", ["unknown token 'Cl'"]),
    ("C" * 5000, ["longer than 2,000 characters", "(5,000 characters)"]),
    ("CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC", ["has 40 tokens", "at most 18"]),  # beyond max_length
]


@pytest.mark.parametrize("molecule, needles", MOLECULE_CASES, ids=[m[:12] for m, _ in MOLECULE_CASES])
@pytest.mark.parametrize("command", ["interpolate first", "interpolate second", "explore"])
def test_molecule_arguments_name_the_offending_molecule_or_token(
    tmp_path, capsys, model_dir, command, molecule, needles
) -> None:
    args = {
        "interpolate first": ["interpolate", molecule, "CCO"],
        "interpolate second": ["interpolate", "CCO", molecule],
        "explore": ["explore", molecule],
    }[command]
    assert main([*args, "--model", str(model_dir), "--out", str(tmp_path / "o"), "--attempts", "1"]) == 2
    line = _one_line_error(capsys, *needles)
    assert len(line) < 300  # a 5,000-character molecule is quoted shortened


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--similar-to", "notadrug", "--min-similarity", "0.4"], ["unknown drug name 'notadrug'"]),
        (["--similar-to", "C1CC(", "--min-similarity", "0.4"], ["'C1CC('"]),
        (["--alerts", "NOPE"], ["--alerts", "unknown alert catalog 'NOPE'"]),
        (["--range", "bogus=1:2"], ["unknown property 'bogus'"]),
        (["--budget", "-1"], ["budget must be a non-negative integer"]),
        (["--local-after", "3", "--no-local"], ["--local-after N or --no-local, not both"]),
        (["--batch", "0"], ["batch must be a positive integer, got 0"]),
    ],
)
def test_optimize_bad_options(tmp_path, capsys, model_dir, extra, needles) -> None:
    args = [
        "optimize",
        "--model",
        str(model_dir),
        "--objective",
        "qed",
        "--out",
        str(tmp_path / "opt"),
        "--no-progress",
    ]
    assert main(args + extra) == 2
    _one_line_error(capsys, *needles)


def test_optimize_init_file_with_a_non_numeric_score(tmp_path, capsys, model_dir) -> None:
    init = tmp_path / "init.csv"
    init.write_text("smiles,score\nCCO,0.5\nCCN,high\n")
    assert (
        main(
            [
                "optimize",
                "--model",
                str(model_dir),
                "--objective",
                "qed",
                "--init",
                str(init),
                "--budget",
                "2",
                "--out",
                str(tmp_path / "opt"),
                "--no-progress",
            ]
        )
        == 2
    )
    _one_line_error(capsys, "init.csv, record 2", "'score'", "'high'", "not a number")


@pytest.mark.parametrize(
    "line, needles",
    [
        ("train --data {ok} --out {file}", ["is a file, expected an output directory"]),
        ("optimize --model {model} --objective qed --out {file} --no-progress", ["is a file"]),
        ("evaluate --samples {ok} --reference {ok} --train none --out {file}", ["is a file"]),
        ("interpolate CCO CCN --model {model} --out {file}", ["is a file"]),
        ("explore CCO --model {model} --out {file}", ["is a file"]),
        ("demo --out {file}", ["is a file"]),
        ("encode --model {model} --input {ok} --out {dir}", ["is a directory"]),
        ("properties --input {ok} --out {dir}", ["is a directory"]),
        ("reconstruct --model {model} --input {ok} --out {dir}", ["is a directory"]),
        ("sample --model {model} --n 2 --out {dir}", ["is a directory"]),
        ("sample --model {model} --n 2 --out {file}/s.csv", ["is a file"]),
        # a name that promises another format: refused, not written as CSV under it
        (
            "sample --model {model} --n 2 --out {tmp}/s.smi",
            ["s.smi: cannot write an output table as .smi", "not a SMILES list", ".csv, .tsv, .sdf (optionally .gz)"],
        ),
        ("properties --input {ok} --out {tmp}/p.txt.gz", ["as .txt.gz"]),
        ("reconstruct --model {model} --input {ok} --out {tmp}/r.json", ["as .json", "or .parquet"]),
        ("properties --input {ok} --out {tmp}/props", ["props: cannot write an output table without a suffix"]),
        (
            "encode --model {model} --input {ok} --out {tmp}/latents.csv",
            ["latents.csv: encode writes a NumPy array", "name the output .npy"],
        ),
    ],
)
def test_outputs_of_the_wrong_kind(tmp_path, capsys, model_dir, line, needles) -> None:
    ok = tmp_path / "ok.smi"
    ok.write_text("CCO\nCCN\n")
    (tmp_path / "adir").mkdir()
    before = sorted(tmp_path.rglob("*"))
    code, err = _run(capsys, line, ok=ok, model=model_dir, file=ok, dir=tmp_path / "adir", tmp=tmp_path)
    assert code == 2, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize(
    "line, needles",
    [
        ("encode --model {model} --input {tmp}/ok.smi --out {tmp}/e.npy --chunk-size 0", ["--chunk-size", "got 0"]),
        ("encode --model {model} --input {tmp}/ok.smi --out {tmp}/e.npy --batch-size 0", ["--batch-size", "got 0"]),
        ("sample --model {model} --n 2 --out {tmp}/s.csv --batch-size 0", ["--batch-size", "got 0"]),
        ("properties --input {tmp}/ok.smi --out {tmp}/p.csv --chunk-size -5", ["--chunk-size", "got -5"]),
        ("reconstruct --model {model} --input {tmp}/ok.smi --out {tmp}/r.csv --chunk-size 0", ["--chunk-size"]),
        (
            "encode --model {model} --input {tmp}/bad.smi --out {tmp}/e.npy --on-error raise",
            ["bad.smi, record 2", "unknown token 'Cl'", "'CCCl'"],
        ),
        (
            "encode --model {model} --input {tmp}/bad.smi --out {tmp}/e.npy --on-error raise --chunk-size 1",
            ["bad.smi, record 2"],
        ),
        (
            "encode --model {model} --input {tmp}/invalid.smi --out {tmp}/e.npy --on-error raise",
            ["invalid.smi, record 3", "invalid SMILES 'C1CC('"],
        ),
    ],
)
def test_bulk_command_options_and_strict_mode(tmp_path, capsys, model_dir, line, needles) -> None:
    (tmp_path / "ok.smi").write_text("CCO\nCCN\n")
    (tmp_path / "bad.smi").write_text("CCO\nCCCl\n")
    (tmp_path / "invalid.smi").write_text("CCO\nCCN\nC1CC(\n")
    code, err = _run(capsys, line, model=model_dir, tmp=tmp_path)
    assert code == 2, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (tmp_path / "e.npy").exists()


def test_csv_field_beyond_the_limit_names_its_line(tmp_path, capsys, monkeypatch) -> None:
    import molvae.readers

    monkeypatch.setattr(molvae.readers, "CSV_FIELD_LIMIT", 1000)  # the real limit is 16 MiB; same code path
    f = tmp_path / "long.csv"
    f.write_text("smiles\nCCO\n" + "C" * 5000 + "\nCCN\n")
    assert main(["properties", "--input", str(f), "--out", str(tmp_path / "p.csv")]) == 2
    _one_line_error(capsys, "long.csv, line 3", "field larger than field limit")


def test_very_long_smiles_in_a_batch_is_one_invalid_row(tmp_path, capsys, model_dir) -> None:
    import numpy as np
    import pandas as pd

    f = tmp_path / "long.smi"
    f.write_text("CCO\n" + "C" * 100_000 + "\nCCN\n")  # RDKit alone would take minutes on this line
    assert main(["properties", "--input", str(f), "--out", str(tmp_path / "p.csv"), "--properties", "mw"]) == 0
    table = pd.read_csv(tmp_path / "p.csv")
    assert table["valid"].tolist() == [True, False, True]
    assert main(["encode", "--model", str(model_dir), "--input", str(f), "--out", str(tmp_path / "e.npy")]) == 0
    z = np.load(tmp_path / "e.npy")
    assert np.isnan(z[1]).all() and np.isfinite(z[[0, 2]]).all()
    assert "skipped 1 invalid" in capsys.readouterr().out


def test_training_resume_with_a_vocabulary_that_does_not_match_the_checkpoint(tmp_path, capsys) -> None:
    import json

    from tests.conftest import moses_smiles

    data = tmp_path / "mols.smi"
    data.write_text("\n".join(moses_smiles(64)) + "\n")
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--embedding-dim",
                "8",
                "--encoder-hidden",
                "8",
                "--latent-dim",
                "4",
                "--decoder-hidden",
                "8",
                "--decoder-layers",
                "1",
                "--val-fraction",
                "0",
                "--val-recon-n",
                "0",
                "--val-sample-n",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    vocab = json.loads((out / "vocab.json").read_text())
    vocab["tokens"].append("[Xe]")
    (out / "vocab.json").write_text(json.dumps(vocab))
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 2
    _one_line_error(capsys, "resume.pt", "embedding.weight", "vocabulary mismatch")


_TINY_TRAIN = [
    "--epochs",
    "1",
    "--batch-size",
    "32",
    "--embedding-dim",
    "8",
    "--encoder-hidden",
    "8",
    "--latent-dim",
    "4",
    "--decoder-hidden",
    "8",
    "--decoder-layers",
    "1",
    "--val-fraction",
    "0",
    "--val-recon-n",
    "0",
    "--val-sample-n",
    "0",
    "--no-progress",
]


@pytest.fixture
def tiny_run(tmp_path, capsys) -> tuple[list[str], Path]:
    """A finished one-epoch run and the command that trained it."""
    from tests.conftest import moses_smiles

    data = tmp_path / "mols.smi"
    data.write_text("\n".join(moses_smiles(64)) + "\n")
    out = tmp_path / "run"
    command = ["train", "--data", str(data), "--out", str(out), *_TINY_TRAIN]
    assert main(command) == 0
    capsys.readouterr()
    return command, out


@pytest.mark.parametrize(
    "change, needles",
    [
        (["--batch-size", "64"], ["--batch-size 64 (the run has 32)"]),
        (["--lr", "0.01", "--seed", "3"], ["--lr 0.01 (the run has 0.001)", "--seed 3 (the run has 0)"]),
        (["--latent-dim", "16"], ["--latent-dim 16 (the run has 4)"]),
        (["--data", "other.smi"], ["--data 'other.smi' (the run has '"]),
    ],
)
def test_training_resume_refuses_changed_settings(tiny_run, capsys, change, needles) -> None:
    command, out = tiny_run
    before = {f: (out / f).read_bytes() for f in ("config.json", "resume.pt")}
    assert main(["train", "--out", str(out), "--resume", *change, "--epochs", "2", "--no-progress"]) == 2
    line = _one_line_error(capsys, "a resumed run keeps the settings it was started with", "--epochs", *needles)
    assert "--batch-size" not in line.split("may change")[0]  # the allowed list names only what may change
    assert {f: (out / f).read_bytes() for f in before} == before  # refused before any work


def test_training_resume_with_the_original_command_extends_the_run(tiny_run, capsys) -> None:
    command, out = tiny_run
    # The first command again, with --resume and two settings a resume may change.
    assert main([*command, "--resume", "--epochs", "2", "--checkpoint-minutes", "60"]) == 0
    assert "resumed from" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())["training"]
    assert (saved["epochs"], saved["checkpoint_minutes"], saved["batch_size"]) == (2, 60.0, 32)
    assert [row["epoch"] for row in _history(out)] == [1, 2]


def _history(out) -> list[dict]:
    import csv

    with open(out / "metrics.csv", newline="") as fh:
        return [{"epoch": int(row["epoch"])} for row in csv.DictReader(fh)]


def test_training_resume_check_in_the_python_api(tiny_run) -> None:
    import dataclasses

    from molvae.errors import ConfigError
    from molvae.training import TrainConfig, Trainer

    _, out = tiny_run
    with pytest.raises(ConfigError, match=r"lr 0.5 \(the run has 0.001\)"):
        Trainer(out, resume=True, overrides={"lr": 0.5})
    with pytest.raises(ConfigError, match=r"decoder_layers 2 \(the run has 1\)"):
        Trainer(out, model_config={"decoder_layers": 2}, resume=True)
    # The saved config with a larger budget passes, and the new epoch count is applied.
    saved = TrainConfig.from_dict(json.loads((out / "config.json").read_text())["training"])
    trainer = Trainer(out, dataclasses.replace(saved, epochs=3, progress=False), resume=True)
    assert (trainer.cfg.epochs, trainer.cfg.progress) == (3, False)
    with pytest.raises(ConfigError, match="kl_weight"):
        Trainer(out, dataclasses.replace(saved, kl_weight=0.1), resume=True)


def test_training_resume_with_a_corrupted_checkpoint(tmp_path, capsys) -> None:
    from molvae.training import TrainConfig

    out = tmp_path / "run"
    out.mkdir()
    data = tmp_path / "m.smi"
    data.write_text("CCO\nCCN\nc1ccccc1\n")
    (out / "config.json").write_text(json.dumps({"model": {}, "training": TrainConfig(data=str(data)).to_dict()}))
    (out / "vocab.json").write_text(json.dumps(Vocabulary([*SPECIAL_TOKENS, "C", "O", "N", "c", "1"]).to_dict()))
    (out / "resume.pt").write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 2
    _one_line_error(capsys, "resume.pt", "cannot load resume state safely")


@pytest.mark.parametrize(
    "section, patch, needles",
    [
        ("training", {"epochs": 0}, ["config.json: training config: epochs must be a positive integer, got 0"]),
        ("training", {"lr": "fast"}, ["training config: lr must be a finite number > 0, got 'fast'"]),
        ("training", {"surprise": 1}, ["training config: unknown fields ['surprise']"]),
    ],
)
def test_training_resume_validates_the_saved_config(tmp_path, capsys, section, patch, needles) -> None:
    from molvae.training import TrainConfig

    out = tmp_path / "run"
    out.mkdir()
    cfg = TrainConfig().to_dict()
    cfg.update(patch)
    (out / "config.json").write_text(json.dumps({"model": {}, "training": cfg}))
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 2
    _one_line_error(capsys, *needles)


@pytest.mark.parametrize(
    "patch, needles",
    [
        ({"batch": 0}, ["config.json: optimization config: batch must be a positive integer, got 0"]),
        ({"method": "random"}, ["optimization config: method must be one of"]),
        ({"surprise": 1}, ["optimization config: unknown fields ['surprise']"]),
    ],
)
def test_optimize_resume_validates_the_saved_config(tmp_path, capsys, model_dir, patch, needles) -> None:
    from dataclasses import asdict

    from molvae.optimization import OptimizeConfig

    out = tmp_path / "opt"
    out.mkdir()
    cfg = {**asdict(OptimizeConfig(objectives=["qed"])), **patch}
    (out / "config.json").write_text(json.dumps({"optimize": cfg}))
    assert main(["optimize", "--model", str(model_dir), "--out", str(out), "--resume", "--no-progress"]) == 2
    _one_line_error(capsys, *needles)


# --------------------------------------------------------------------------- public functions
def test_batch_functions_give_nan_rows_for_bad_items_and_strict_mode_names_them(model_dir) -> None:
    import numpy as np

    from molvae.errors import InvalidMoleculeError, UnknownTokenError

    model = MolVAE.load(model_dir, device="cpu")
    bad = ["C1CC(", "CCCl", "C" * 3000, "C" * 40, ""]
    z = model.encode(["CCO", *bad], errors="nan")
    assert np.isfinite(z[0]).all() and np.isnan(z[1:]).all()
    assert model.reconstruct(["CCO", *bad], errors="nan")[1:] == [None] * len(bad)
    with pytest.raises(InvalidMoleculeError, match=r"invalid SMILES 'C1CC\('"):
        model.encode(["CCO", "C1CC("])
    with pytest.raises(UnknownTokenError, match="unknown token 'Cl' in molecule 'CCCl'"):
        model.encode(["CCCl"])
    with pytest.raises(InvalidMoleculeError, match=r"invalid SMILES 'CCCC.*\.\.\. \(3,000 characters\)"):
        model.encode(["C" * 3000])
    with pytest.raises(InvalidMoleculeError, match="has 40 tokens; this model handles at most 18"):
        model.encode(["C" * 40])


def test_library_calls_with_bad_sets_and_options(tmp_path, model_dir) -> None:
    from molvae.data import read_smiles
    from molvae.errors import ConfigError, DataError, InputFileError
    from molvae.metrics import evaluate
    from molvae.optimization import optimize

    empty = tmp_path / "empty.smi"
    empty.write_text("")
    assert read_smiles(empty) == []
    with pytest.raises(InputFileError, match="empty.smi: no molecules found"):
        read_smiles(empty, allow_empty=False)
    with pytest.raises(DataError, match="list: the reference set has no valid molecule"):
        evaluate(["CCO"], reference=["C1CC(", "xyz"], train=None)
    with pytest.raises(DataError, match="list: the training set has no valid molecule"):
        evaluate(["CCO"], reference=["CCO", "CCN"], train=["C1CC("])
    model = MolVAE.load(model_dir, device="cpu")
    with pytest.raises(ConfigError, match=r"optimization config: unknown fields \['budgett'\]"):
        optimize(model, "qed", tmp_path / "opt", budgett=5)


@pytest.mark.parametrize(
    "line",
    [
        "optimize --model {model} --objective qed --budget 2 --n-init 2 --out {model} --no-progress",
        "evaluate --samples {tmp}/ok.smi --reference {tmp}/ok.smi --train none --out {model}",
        "interpolate CCO CCN --model {model} --steps 3 --out {model}",
        "explore CCO --model {model} --n 2 --out {model}",
        "demo --model {model} --out {model}",
    ],
    ids=lambda line: line.split()[0],
)
def test_a_model_directory_is_never_an_output_directory(tmp_path, capsys, model_dir, line) -> None:
    """Their config.json / metrics.csv would replace the model's own files of the same names."""
    (tmp_path / "ok.smi").write_text("CCO\nCCN\n")
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    code, err = _run(capsys, line, model=model_dir, tmp=tmp_path)
    assert code == 2 and "holds a trained model or training run" in err, err
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before


@pytest.mark.parametrize(
    "line",
    [
        "properties --input {f} --out {f} --properties mw",
        "reconstruct --model {model} --input {f} --out {f}",
        "encode --model {model} --input {f} --out {tmp}/z.npy --index {f}",
    ],
    ids=lambda line: line.split()[0],
)
def test_an_output_that_is_the_input_file_is_refused(tmp_path, capsys, model_dir, line) -> None:
    f = tmp_path / "assay.csv"
    f.write_text("smiles,compound_id,pIC50\nCCO,A1,5.2\nCCN,A2,6.1\n")
    before = f.read_bytes()
    code, err = _run(capsys, line, model=model_dir, f=f, tmp=tmp_path)
    assert code == 2 and "is also the input file" in err, err
    assert f.read_bytes() == before


def test_an_empty_output_directory_name_is_refused(tmp_path, capsys, model_dir) -> None:
    assert main(["interpolate", "CCO", "CCN", "--model", str(model_dir), "--out", ""]) == 2
    assert "the output directory is empty" in capsys.readouterr().err
