"""Loading never executes code from a file, and inconsistent model directories are refused clearly."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from molvae.checkpoint import load_state, save_state
from molvae.errors import ModelLoadError
from molvae.model import ModelConfig, MolVAE, SequenceVAE
from molvae.tokenizers import SPECIAL_TOKENS, Vocabulary


class _CreatesFile:
    """Unpickling this object would create a file: the marker of executed code."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def model_dir(tmp_path):
    vocab = Vocabulary([*SPECIAL_TOKENS, "C", "O", "c", "1", "N"])
    torch.manual_seed(0)
    net = SequenceVAE(
        ModelConfig(
            vocab_size=len(vocab), embedding_dim=8, encoder_hidden=8, latent_dim=4, decoder_hidden=8, decoder_layers=1
        )
    )
    d = tmp_path / "model"
    MolVAE(net, vocab, device="cpu").save(d)
    return d


@pytest.mark.parametrize("target", ["model.safetensors", "config.json", "vocab.json"])
def test_planted_pickle_is_refused_and_not_executed(model_dir, tmp_path, target) -> None:
    marker = tmp_path / f"pwned-{target}"
    (model_dir / target).write_bytes(pickle.dumps(_CreatesFile(str(marker))))
    with pytest.raises(ModelLoadError) as info:
        MolVAE.load(model_dir)
    assert target in str(info.value)
    assert not marker.exists()


def test_resume_state_refuses_arbitrary_pickles(tmp_path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "resume.pt"
    torch.save({"x": _CreatesFile(str(marker))}, bad)
    assert not marker.exists()
    with pytest.raises(ModelLoadError, match="cannot load resume state safely"):
        load_state(bad)
    assert not marker.exists()
    good = tmp_path / "ok.pt"
    save_state(good, {"w": torch.ones(2), "state": {"epoch": 1, "history": [{"a": 1.0}]}})
    assert load_state(good)["state"]["epoch"] == 1


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"latent_dim": "4"}, "latent_dim must be a positive integer"),
        ({"latent_dim": -1}, "latent_dim must be a positive integer"),
        ({"decoder_dropout": 2.0}, "decoder_dropout"),
        ({"representation": "inchi"}, "representation"),
        ({"surprise": 1}, "unknown fields"),
        ({"vocab_size": 99}, "vocabulary mismatch"),
        ({"decoder_hidden": 16}, "shape"),
    ],
)
def test_invalid_config_values_are_refused(model_dir, patch, message) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    config["model"].update(patch)
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=message):
        MolVAE.load(model_dir)


def test_truncated_weights_are_refused(model_dir) -> None:
    data = (model_dir / "model.safetensors").read_bytes()
    (model_dir / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="not a valid safetensors"):
        MolVAE.load(model_dir)


def test_nan_weights_are_refused(model_dir) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(model_dir / "model.safetensors")
    weights["output.bias"][0] = float("nan")
    save_file(weights, model_dir / "model.safetensors")
    with pytest.raises(ModelLoadError, match="NaN"):
        MolVAE.load(model_dir)


def test_a_file_where_a_directory_is_expected(tmp_path) -> None:
    f = tmp_path / "model.txt"
    f.write_text("x")
    with pytest.raises(ModelLoadError, match="expected a model directory"):
        MolVAE.load(f)
