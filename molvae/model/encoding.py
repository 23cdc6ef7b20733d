"""Encoding molecules: tokenized batches sorted by length, and streams of molecules written to a ``.npy`` file.

``encode_token_ids`` builds each batch's padding in one vectorized gather.
:func:`~molvae.model.encode_to_npy` encodes any number of molecules chunk by chunk into a ``.npy``
file (what ``molvae encode`` writes), holding one chunk in memory; ``encode_chunk``
is its step, for callers that write more beside the codes.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from molvae.batching import iter_batches
from molvae.errors import ConfigError, MolvaeError
from molvae.model.network import SequenceVAE
from molvae.seeding import random_seed
from molvae.tables import NpyWriter, check_output_file
from molvae.tokenizers import EOS_ID, PAD_ID

if TYPE_CHECKING:
    from molvae.model.vae import MolVAE

#: The element type of latent ``.npy`` files: little-endian float32, whatever the machine.
LATENT_DTYPE = np.dtype("<f4")


@torch.no_grad()
def encode_token_ids(
    net: SequenceVAE,
    ids: Sequence[list[int] | None],
    device: torch.device,
    batch_size: int,
    eps: torch.Tensor | None = None,
    static_shapes: bool = False,
) -> np.ndarray:
    """Codes [N, D] (float32) of token-id lists (None: a NaN row): μ, or μ + σ ⊙ ``eps[i]`` for row ``i``.

    ``static_shapes``: encode over the padded width instead of packed sequences (see
    :meth:`SequenceVAE.encode`); on CPU in bf16 packed shapes make oneDNN cache a primitive
    for nearly every batch, and memory grows with the input (docs/PERFORMANCE.md).
    """
    out = np.full((len(ids), net.config.latent_dim), np.nan, dtype=np.float32)
    # One flat token array and vectorized padding: per-molecule Python work capped GPU encoding.
    n_tokens = np.fromiter((-1 if x is None else len(x) for x in ids), dtype=np.int64, count=len(ids))
    good = np.flatnonzero(n_tokens >= 0)
    # Longest batches first: each later batch fits in the memory blocks the earlier ones freed
    # (molvae.runtime keeps freed memory in the process), and an out-of-memory batch size shows
    # on the first batch. Ascending order made every batch ask for larger blocks (docs/PERFORMANCE.md).
    good = good[np.argsort(-n_tokens[good], kind="stable")]
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(np.maximum(n_tokens, 0), out=offsets[1:])
    # A trailing PAD: indices clamped past the last molecule land on it, even when no molecule has a token.
    tokens_then_pad = itertools.chain((t for x in ids if x is not None for t in x), (PAD_ID,))
    flat_t = torch.from_numpy(np.fromiter(tokens_then_pad, dtype=np.int32, count=int(offsets[-1]) + 1))

    def encode_batch(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        chunk = good[start:stop]
        n = torch.from_numpy(n_tokens[chunk])
        cols = torch.arange(int(n.max()) + 1)
        # Gather a full rectangle (indices past a row's end clamped), then blank the padding.
        index = (torch.from_numpy(offsets[chunk])[:, None] + cols).clamp_(max=len(flat_t) - 1)
        tokens = torch.where(cols < n[:, None], flat_t[index], PAD_ID).long()
        tokens[torch.arange(len(chunk)), n] = EOS_ID
        mu, logvar = net.encode(tokens.to(device), n + 1, static_shapes=static_shapes)
        z = mu.float()
        if eps is not None:
            z = z + eps[torch.from_numpy(chunk)].to(device) * torch.exp(0.5 * logvar.float())
        return chunk, z.cpu().numpy()

    for chunk, z in iter_batches(encode_batch, len(good), batch_size, "encode"):
        out[chunk] = z
    return out


@dataclass
class EncodedChunk:
    """The codes of one chunk of a molecule stream, whose first molecule is row ``first`` of the whole."""

    first: int
    smiles: list[str]
    latents: np.ndarray  # [len(smiles), D] float32; NaN rows for the molecules not encoded
    errors: list[str]  # why each molecule was not encoded; "" where it was

    @property
    def encoded(self) -> list[bool]:
        return [not e for e in self.errors]

    @property
    def n_skipped(self) -> int:
        return sum(1 for e in self.errors if e)


def encode_chunk(
    model: MolVAE,
    smiles: Sequence[str],
    first: int = 0,
    sample: bool = False,
    seed: int | None = None,
    batch_size: int = 1024,
    errors: str = "nan",
    source: str | None = None,
) -> EncodedChunk:
    """Encode ``smiles``, rows ``first``... of a longer stream (see :func:`.encode_to_npy` for the arguments).

    With ``sample`` each row's draw depends on ``seed`` and its row number only, so a stream
    encoded in chunks samples as a whole. ``errors="raise"`` stops at the first molecule that
    cannot be encoded, with an error naming its record (1-based) and ``source``.
    """
    ids: list[list[int] | None] = []
    reasons: list[str] = []
    for row, item in enumerate(model.token_ids_many(smiles), start=first + 1):
        if isinstance(item, MolvaeError):
            if errors == "raise":
                where = f"{source}, record {row}" if source else f"record {row}"
                raise MolvaeError(f"{where}: {item}") from None
            reasons.append(str(item))
            ids.append(None)
        else:
            reasons.append("")
            ids.append(item)
    z = model.encode_ids(ids, sample=sample, batch_size=batch_size, seed=seed, first_key=first)
    return EncodedChunk(first, list(smiles), z, reasons)


def encode_to_npy(
    model: MolVAE,
    smiles: Iterable[str],
    path: str | os.PathLike,
    n: int | None = None,
    *,
    chunk_size: int = 20_000,
    sample: bool = False,
    seed: int | None = None,
    batch_size: int = 1024,
    errors: str = "nan",
) -> int:
    """Write the codes of ``smiles`` to the ``.npy`` file ``path``, [n, latent_dim] float32; returns the NaN row count.

    Row ``i`` is ``model.encode``'s row for molecule ``i``: the posterior mean, or a draw with
    ``sample`` (seeded by ``seed`` and the row number: the same whatever ``chunk_size`` and
    ``batch_size``). A molecule that cannot be encoded (invalid, too long, unknown token) is a
    NaN row with ``errors="nan"``, an error naming its record with ``errors="raise"``.
    ``smiles`` may be any iterable, a generator over a file included: memory holds one chunk of
    ``chunk_size`` molecules. The header holds the row count, so ``n`` (how many ``smiles``
    yields) is needed unless ``smiles`` has a length. The file is written beside ``path`` and
    renamed onto it at the end: a failed or interrupted call leaves the old file or none.
    """
    if isinstance(smiles, str):
        raise TypeError("encode_to_npy expects an iterable of SMILES, not a single string")
    if errors not in ("raise", "nan"):
        raise ConfigError(f"errors must be 'raise' or 'nan', got {errors!r}")
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ConfigError(f"chunk size must be a positive integer, got {chunk_size!r}")
    if n is None:
        if not isinstance(smiles, Sized):
            raise ConfigError("give n, the number of molecules: the .npy header holds the row count")
        n = len(smiles)
    if sample and seed is None:
        seed = random_seed()  # one seed for the whole file, so its chunks draw as one stream
    molecules = iter(smiles)
    skipped = 0
    with NpyWriter(check_output_file(path), n, model.config.latent_dim, LATENT_DTYPE) as out:
        while chunk := list(itertools.islice(molecules, chunk_size)):
            if out.rows + len(chunk) > n:
                raise ConfigError(f"smiles holds more than n={n:,} molecules")
            part = encode_chunk(model, chunk, out.rows, sample=sample, seed=seed, batch_size=batch_size, errors=errors)
            out.write(part.latents)
            skipped += part.n_skipped
        if out.rows != n:
            raise ConfigError(f"smiles holds {out.rows:,} molecules, not n={n:,}")
    return skipped
