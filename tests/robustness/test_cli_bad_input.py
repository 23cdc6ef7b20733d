"""Every command answers bad input with one clear stderr line, a non-zero exit and no traceback."""

from __future__ import annotations

import gzip

import pytest
import torch

from molvae.cli.main import main
from molvae.model import MolVAE, ModelConfig, SequenceVAE
from molvae.tokenizers import SPECIAL_TOKENS, Vocabulary


@pytest.fixture
def model_dir(tmp_path):
    vocab = Vocabulary([*SPECIAL_TOKENS, "C", "O", "c", "1", "N", "(", ")", "="])
    torch.manual_seed(0)
    net = SequenceVAE(ModelConfig(vocab_size=len(vocab), embedding_dim=8, encoder_hidden=8, latent_dim=4,
                                  decoder_hidden=8, decoder_layers=1, max_length=20))
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
    args = [command, "--input", str(path), "--out", str(tmp_path / "out.csv")]
    if command != "properties":
        args += ["--model", str(model_dir)]
    assert main(args) == 2
    _one_line_error(capsys, path.name)
    assert not (tmp_path / "out.csv").exists()


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
