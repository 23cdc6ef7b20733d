"""Priors on disk: ``priors/NAME.safetensors`` and ``priors/NAME.json`` inside a model directory.

The JSON names the kind, the latent size, the modelled dimensions, the kind's settings,
the SHA-256 of the weights the prior was fitted to and how it was fitted; the tensors are
safetensors (never a pickle). ``priors/default.json`` names the prior commands use when
``--prior`` is not given. Everything read is checked (kind, shapes, finiteness, the
weights it belongs to) and a bad file is a one-line :class:`~molvae.errors.ModelLoadError`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from molvae.checkpoint import load_weights, read_json, save_weights, write_json
from molvae.errors import ConfigError, ModelLoadError
from molvae.priors.base import Prior, StandardNormal
from molvae.priors.flow import FlowPrior
from molvae.priors.mixture import GaussianMixturePrior

#: The kinds of prior, by the name the CLI and the files use: adding a kind is one entry here.
PRIOR_KINDS: dict[str, type[Prior]] = {cls.kind: cls for cls in (StandardNormal, GaussianMixturePrior, FlowPrior)}
PRIORS_DIR = "priors"
DEFAULT_FILE = "default.json"
#: Names with a meaning of their own on the command line, never a stored prior's name.
RESERVED_NAMES = ("auto", "all", "standard", "default")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
FORMAT_VERSION = 1


class StalePriorError(ModelLoadError):
    """A stored prior was fitted to other weights than the model's (the model was trained further)."""


def check_prior_name(name: str) -> str:
    """``name`` if it can name a stored prior (lower-case letters, digits, ``-``, ``_``; not reserved)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise ConfigError(
            f"prior name {name!r}: use lower-case letters, digits, '-' and '_' (not {', '.join(RESERVED_NAMES)})"
        )
    return name


def stored_priors(model_dir: str | Path | None) -> list[str]:
    """Names of the priors stored in a model directory (sorted)."""
    folder = Path(model_dir) / PRIORS_DIR if model_dir is not None else None
    if folder is None or not folder.is_dir():
        return []
    return sorted(
        p.stem for p in folder.glob("*.json") if p.name != DEFAULT_FILE and (p.with_suffix(".safetensors")).is_file()
    )


def default_prior_name(model_dir: str | Path | None) -> str:
    """The prior named in ``priors/default.json``, else ``"standard"``."""
    file = Path(model_dir) / PRIORS_DIR / DEFAULT_FILE if model_dir is not None else None
    if file is None or not file.is_file():
        return "standard"
    raw = read_json(file, "default prior")
    name = raw.get("prior") if isinstance(raw, dict) else None
    if not isinstance(name, str):
        raise ModelLoadError(f'{file}: expected {{"prior": NAME}}')
    return name


def describe_priors(model_dir: str | Path | None) -> dict[str, Any]:
    """The default prior's name and, per stored prior, its kind, modelled dimensions and fit record (JSON only)."""
    stored = {}
    for name in stored_priors(model_dir):
        meta = read_json(Path(model_dir) / PRIORS_DIR / f"{name}.json", "prior description")
        meta = meta if isinstance(meta, dict) else {}
        stored[name] = {
            "kind": meta.get("kind"),
            "active_dimensions": len(meta.get("active") or []),
            "fit": meta.get("fit"),
        }
    return {"default": default_prior_name(model_dir), "stored": stored}


def save_prior(
    prior: Prior,
    model_dir: str | Path,
    name: str,
    weights_sha256: str | None,
    fit_info: dict[str, Any],
    make_default: bool = False,
) -> Path:
    """Write ``prior`` as ``model_dir/priors/NAME.{json,safetensors}`` (atomically); returns the JSON path."""
    check_prior_name(name)
    folder = Path(model_dir) / PRIORS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / f"{name}.safetensors", {k: v.detach().cpu() for k, v in prior.tensors().items()})
    write_json(
        folder / f"{name}.json",
        {
            "format": FORMAT_VERSION,
            "kind": prior.kind,
            "dim": prior.dim,
            "active": [int(i) for i in prior.active],
            "settings": prior.settings(),
            "model_weights_sha256": weights_sha256,
            "fit": fit_info,
        },
    )
    if make_default:
        write_json(folder / DEFAULT_FILE, {"prior": name})
    return folder / f"{name}.json"


def read_prior(model_dir: str | Path, name: str, dim: int, weights_sha256: str | None) -> Prior:
    """Load the stored prior ``name`` of a model whose latent size is ``dim`` and weights digest ``weights_sha256``."""
    folder = Path(model_dir) / PRIORS_DIR
    json_file, tensor_file = folder / f"{name}.json", folder / f"{name}.safetensors"
    if not json_file.is_file():
        stored = stored_priors(model_dir)
        raise ModelLoadError(
            f"no prior named {name!r} in {model_dir} (stored: {', '.join(stored) or 'none'}; "
            "'standard' is always there)"
        )
    meta = read_json(json_file, "prior description")
    recorded = meta.get("model_weights_sha256") if isinstance(meta, dict) else None
    if recorded and weights_sha256 and recorded != weights_sha256:
        raise StalePriorError(
            f"{json_file}: prior {name!r} was fitted to other weights than this model's; "
            f"fit it again with `molvae fit-prior --name {name} --overwrite`"
        )
    try:
        cls, active, settings = _check_meta(meta, dim)
        tensors = load_weights(tensor_file)
        _check_tensors(tensors, cls.tensor_shapes(len(active), settings))
        prior = cls.from_stored(dim, active, tensors, settings)
    except (ConfigError, TypeError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"{json_file}: {exc}") from None
    prior.name = name
    return prior


def _check_meta(meta: Any, dim: int) -> tuple[type[Prior], np.ndarray, dict[str, Any]]:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise ConfigError(f"not a molvae prior description (format {FORMAT_VERSION})")
    cls = PRIOR_KINDS.get(meta.get("kind"))
    if cls is None:
        raise ConfigError(f"unknown prior kind {meta.get('kind')!r} (known: {', '.join(PRIOR_KINDS)})")
    if meta.get("dim") != dim:
        raise ConfigError(f"the prior is over {meta.get('dim')} latent dimensions, the model has {dim}")
    active = np.asarray(meta.get("active"), dtype=np.int64)
    if (
        active.ndim != 1
        or len(active) == 0
        or len(np.unique(active)) != len(active)
        or active.min() < 0
        or active.max() >= dim
    ):
        raise ConfigError(f"'active' must list distinct dimensions in [0, {dim})")
    settings = meta.get("settings")
    if not isinstance(settings, dict):
        raise ConfigError("'settings' must be an object")
    return cls, np.sort(active), settings


def _check_tensors(tensors: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]]) -> None:
    if set(tensors) != set(shapes):
        raise ConfigError(f"tensors {sorted(tensors)} do not match the kind's {sorted(shapes)}")
    for key, shape in shapes.items():
        if tuple(tensors[key].shape) != shape:
            raise ConfigError(f"tensor {key} has shape {list(tensors[key].shape)}, expected {list(shape)}")
        if not torch.isfinite(tensors[key].double()).all():
            raise ConfigError(f"tensor {key} contains NaN or Inf")
