"""Model directories on disk: the bundled models, loading (every file checked) and saving (atomic).

A model directory holds ``config.json`` (``{"model": ModelConfig, ...}``), ``vocab.json`` and
``model.safetensors``; ``molvae.folders`` names them.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from molvae.checkpoint import load_weights, read_json, save_weights, write_json
from molvae.errors import ConfigError, ModelLoadError, MolvaeError
from molvae.folders import CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE
from molvae.model.network import ModelConfig, SequenceVAE
from molvae.tokenizers import Vocabulary

if TYPE_CHECKING:
    from molvae.model.vae import MolVAE

log = logging.getLogger(__name__)

PRETRAINED_PACKAGE_DIR = ("resources", "pretrained")


def pretrained_dir() -> Path:
    """Folder of the pretrained models shipped inside the package."""
    # A path beside the package: importlib.resources' namespace readers fail on some
    # editable installs (NotADirectoryError from MultiplexedPath).
    return Path(__file__).resolve().parent.parent.joinpath(*PRETRAINED_PACKAGE_DIR)


def available_pretrained() -> list[str]:
    """Names of the bundled pretrained models (e.g. ``zinc-smiles``, ``zinc-selfies``)."""
    root = pretrained_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / WEIGHTS_FILE).is_file())


def model_directory(path: str | Path) -> Path:
    """The directory ``path`` names: a bundled model for a string that is a bundled name, else the path.

    A bundled name is the bundled model even where the working directory holds a file or
    folder of that name (a warning says how to reach it: ``./zinc-smiles``); a
    :class:`~pathlib.Path` is always a directory.
    """
    if isinstance(path, str) and path in available_pretrained():
        if Path(path).exists():
            log.warning(
                "model %r is the bundled model; the %s %s in this directory is not used (give ./%s for it)",
                path,
                "folder" if Path(path).is_dir() else "file",
                path,
                path,
            )
        return pretrained_dir() / path
    return Path(path)


def read_model_dir(path: Path) -> tuple[SequenceVAE, Vocabulary, dict[str, Any] | None]:
    """The network (fp32 weights), vocabulary and model card (None unless bundled) of a model directory.

    Every file is checked: a missing or unreadable one, a vocabulary or weights that do not
    match the config, and NaN weights are one-line :class:`ModelLoadError`s.
    """
    if not path.exists():
        names = available_pretrained()
        hint = f" (bundled pretrained models: {', '.join(names)})" if names else ""
        raise ModelLoadError(f"{path}: model directory not found{hint}")
    if not path.is_dir():
        raise ModelLoadError(f"{path}: expected a model directory (with {CONFIG_FILE}, {VOCAB_FILE}, {WEIGHTS_FILE})")
    raw = read_json(path / CONFIG_FILE, "model config")
    model_cfg = raw.get("model") if isinstance(raw, dict) else None
    if model_cfg is None:
        raise ModelLoadError(f"{path / CONFIG_FILE}: no 'model' section")
    try:
        config = ModelConfig.from_dict(model_cfg)
        vocab = Vocabulary.from_dict(read_json(path / VOCAB_FILE, "vocabulary"))
    except ConfigError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    if len(vocab) != config.vocab_size:
        raise ModelLoadError(
            f"{path}: vocabulary mismatch: {VOCAB_FILE} has {len(vocab)} tokens, {CONFIG_FILE} "
            f"says vocab_size={config.vocab_size}"
        )
    net = SequenceVAE(config)
    net.load_state_dict(_checked_weights(path / WEIGHTS_FILE, net.state_dict()))
    card = raw.get("card") if isinstance(raw.get("card"), dict) else None
    return net, vocab, card


def _checked_weights(file: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of ``file`` as fp32, checked against the network's own state dict."""
    state = load_weights(file)
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ModelLoadError(f"{file}: weights do not match the config (missing {missing[:3]}, unexpected {extra[:3]})")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ModelLoadError(
                f"{file}: {key} has shape {tuple(tensor.shape)}, config implies {tuple(expected[key].shape)}"
            )
        if not torch.isfinite(tensor.float()).all():
            raise ModelLoadError(f"{file}: {key} contains NaN/Inf")
    # Bundled weights are stored in half precision; inference runs from fp32 copies.
    return {k: v.float() for k, v in state.items()}


def save_model(
    model: MolVAE,
    path: str | Path,
    extra_config: dict[str, Any] | None = None,
    weights_dtype: torch.dtype = torch.float32,
) -> None:
    """Write weights (safetensors), config.json and vocab.json atomically: :meth:`MolVAE.save`."""
    if weights_dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise MolvaeError(f"weights can be stored as float32, float16 or bfloat16, not {weights_dtype}")
    state = model.net.state_dict()
    if weights_dtype != torch.float32:
        limit = torch.finfo(weights_dtype).max
        for key, tensor in state.items():
            if tensor.abs().max().item() >= limit:
                raise MolvaeError(f"{key} does not fit {weights_dtype} (max |w| {tensor.abs().max().item():.3g})")
        state = {k: v.to(weights_dtype) for k, v in state.items()}
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / VOCAB_FILE, model.vocab.to_dict())
    write_json(path / CONFIG_FILE, {"model": model.config.to_dict(), **(extra_config or {})})
    save_weights(path / WEIGHTS_FILE, state)


def weights_sha256(source: str | Path | None) -> str | None:
    """SHA-256 of the weights file in the model directory ``source`` (None without one)."""
    weights = Path(source) / WEIGHTS_FILE if source else None
    if weights is None or not weights.is_file():
        return None
    return hashlib.sha256(weights.read_bytes()).hexdigest()
