"""Pre-tokenized data files: a prepared data set that trains without RDKit or the MOSES wheel.

A token file is a NumPy ``.npz`` archive (a zip of ``.npy`` members, LZMA-compressed,
read with ``allow_pickle=False``) holding the token ids of every molecule, their lengths,
the vocabulary and the data summary. For a SMILES data set the canonical SMILES are the
tokens joined, so they are not stored; for SELFIES they are stored beside the ids.
``molvae train --data FILE.npz`` reads it like any molecule file, in the same order, so a
run on it splits train/validation as a run on the original source does
(:func:`molvae.datasets.save_token_file` and :func:`molvae.datasets.load_dataset` are the
entry points; this module is the file format alone).

It exists for machines without RDKit (a GPU machine with no network): the cleaning
and tokenizing was done where RDKit is, and is not repeated.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from molvae.errors import DataError, shorten

FORMAT_NAME = "molvae-tokens"
FORMAT_VERSION = 1
SUFFIX = ".npz"
_REQUIRED = ("meta", "ids", "lengths")
# Molecules spelled per array pass in joined_tokens: bounds its temporary arrays to tens of MB.
_JOIN_CHUNK = 100_000


@dataclass
class TokenArrays:
    """A token file's content: flat ids (int16), lengths (int64), vocabulary, SMILES (None: the joined
    tokens), and the data summary as a dict."""

    ids: np.ndarray
    lengths: np.ndarray
    vocab: list[str]
    smiles: list[str] | None
    summary: dict


def joined_tokens(ids: np.ndarray, offsets: np.ndarray, vocab: Sequence[str]) -> list[str]:
    """Each molecule's tokens joined into one string (its SMILES, for a SMILES vocabulary).

    ASCII vocabularies (SMILES, SELFIES) are spelled by array gathers, a chunk of molecules at a
    time: a Python join per molecule takes most of the time of reading MOSES.
    """
    encoded = [token.encode("utf-8") for token in vocab]
    if any(len(e) != len(t) for e, t in zip(encoded, vocab)):
        tokens = np.array(vocab, dtype=object)
        return ["".join(tokens[ids[a:b]]) for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    sizes = np.array([len(e) for e in encoded], dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    table = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    out: list[str] = []
    for lo in range(0, len(offsets) - 1, _JOIN_CHUNK):
        hi = min(len(offsets) - 1, lo + _JOIN_CHUNK)
        chunk = ids[offsets[lo] : offsets[hi]]
        ends = np.cumsum(sizes[chunk])
        chars = np.arange(ends[-1] if len(ends) else 0) + np.repeat(starts[chunk] - (ends - sizes[chunk]), sizes[chunk])
        text = table[chars].tobytes().decode("ascii")
        bounds = np.concatenate([[0], ends])[offsets[lo : hi + 1] - offsets[lo]].tolist()
        out.extend(text[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
    return out


def _narrowest(values: np.ndarray, limit: int) -> np.ndarray:
    """``values`` as uint8 when they fit (they compress much better), else as int32."""
    return values.astype(np.uint8 if limit < 256 else np.int32)


def write_token_file(path: str | Path, content: TokenArrays, representation: str) -> Path:
    """Write ``content`` as a token file at ``path`` (which must end in ``.npz``); returns the path."""
    # checkpoint loads torch: imported where a file is written, not by every reader of data.
    from molvae.checkpoint import atomic_write

    path = Path(path)
    if path.suffix != SUFFIX:
        raise DataError(f"{path}: a token file's name must end in {SUFFIX}")
    lengths = np.asarray(content.lengths)
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "representation": representation,
        "vocab": list(content.vocab),
        "n": len(lengths),
        "smiles_stored": content.smiles is not None,
        "summary": content.summary,
    }
    arrays = {
        "meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
        "ids": _narrowest(np.asarray(content.ids), len(content.vocab)),
        "lengths": _narrowest(lengths, int(lengths.max(initial=0)) + 1),
    }
    if content.smiles is not None:
        arrays["smiles"] = np.frombuffer("\n".join(content.smiles).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    # LZMA: token ids compress to about half of what np.savez_compressed's deflate gives.
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_LZMA) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write(path, buf.getvalue())
    return path


def _read_meta(npz: np.lib.npyio.NpzFile, path: Path) -> dict:
    missing = [name for name in _REQUIRED if name not in npz.files]
    if missing:
        raise DataError(f"{path}: not a molvae token file (no {', '.join(missing)} array)")
    try:
        meta = json.loads(npz["meta"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataError(f"{path}: not a molvae token file (unreadable meta)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        name = meta.get("format") if isinstance(meta, dict) else None
        raise DataError(f"{path}: not a molvae token file (format {shorten(name, 40)})")
    if meta.get("version") != FORMAT_VERSION:
        raise DataError(f"{path}: token file version {meta.get('version')!r}; this molvae reads {FORMAT_VERSION}")
    return meta


def _checked_arrays(npz: np.lib.npyio.NpzFile, meta: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ids (int16) and lengths (int64), checked against each other and the vocabulary."""
    ids, lengths = npz["ids"], npz["lengths"]
    if ids.ndim != 1 or lengths.ndim != 1 or ids.dtype.kind not in "iu" or lengths.dtype.kind not in "iu":
        raise DataError(f"{path}: ids and lengths must be one-dimensional integer arrays")
    lengths = lengths.astype(np.int64)
    if len(lengths) != meta["n"] or int(lengths.sum()) != len(ids) or (len(lengths) and lengths.min() < 1):
        raise DataError(f"{path}: lengths do not add up to the {len(ids):,} token ids for {meta['n']:,} molecules")
    if len(ids) and int(ids.max()) >= len(meta["vocab"]):
        raise DataError(f"{path}: token id {int(ids.max())} is outside its vocabulary of {len(meta['vocab'])}")
    return ids.astype(np.int16), lengths


def read_token_file(path: str | Path, representation: str) -> TokenArrays:
    """A token file's content, checked; a one-line :class:`DataError` for anything that is not one."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such token file")
    # np.load would take a single .npy array, or a pickle, as readily: only an archive is one.
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a molvae token file (not a .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = _read_meta(npz, path)
            ids, lengths = _checked_arrays(npz, meta, path)
            smiles_blob = npz["smiles"].tobytes().decode("utf-8") if meta.get("smiles_stored") else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise DataError(f"{path}: not a readable molvae token file ({type(exc).__name__}: {exc})") from None
    if meta.get("representation") != representation:
        raise DataError(
            f"{path} holds {meta.get('representation')} tokens; this run is set to {representation} "
            f"(pass --representation {meta.get('representation')})"
        )
    smiles = smiles_blob.split("\n") if smiles_blob is not None else None
    if smiles is not None and len(smiles) != len(lengths):
        raise DataError(f"{path}: {len(smiles):,} SMILES stored for {len(lengths):,} molecules")
    return TokenArrays(ids, lengths, list(meta["vocab"]), smiles, dict(meta.get("summary") or {}))
