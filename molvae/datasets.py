"""Tokenized data sets: cleaning, integer arrays, their on-disk cache, splits and batches.

Flow: file lines → RDKit canonical SMILES → representation string → tokens →
integer ids in one flat array with offsets (no per-molecule Python objects after
preparation, so epoch 2+ does no string work). Every dropped line is counted by
reason in a :class:`DataSummary`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from molvae.errors import ConfigError, DataError, MolvaeError
from molvae.readers import read_smiles, resolve_data_source, sample_smiles
from molvae.tokenfile import SUFFIX as TOKEN_FILE_SUFFIX
from molvae.tokenfile import TokenArrays, joined_tokens, read_token_file, write_token_file
from molvae.tokenizers import BOS_ID, EOS_ID, PAD_ID, Vocabulary, get_tokenizer

log = logging.getLogger(__name__)

# Bumped whenever the cached array layout or cleaning rules change.
CACHE_FORMAT_VERSION = 2  # 2: repeated molecules dropped
# Below this many molecules worker start-up costs more than it saves.
PARALLEL_THRESHOLD = 20_000

DROP_REASONS = {
    "empty": "empty line",
    "invalid": "invalid SMILES (RDKit could not parse/sanitize)",
    "untokenizable": "could not be converted/tokenized",
    "too_long": "longer than max tokens",
    "unknown_token": "token outside the vocabulary",
    "duplicate": "repeats an earlier molecule (same canonical SMILES)",
}


# ----------------------------------------------------------------------- cleaning
@dataclass
class DataSummary:
    """How many records were read, kept and dropped (by reason)."""

    source: str
    n_read: int = 0
    n_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def format(self) -> str:
        lines = [f"{self.source}: read {self.n_read:,} records, kept {self.n_kept:,}, dropped {self.n_dropped:,}"]
        for reason, count in sorted(self.dropped.items(), key=lambda kv: -kv[1]):
            if count:
                lines.append(f"  dropped {count:,}: {DROP_REASONS.get(reason, reason)}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"source": self.source, "n_read": self.n_read, "n_kept": self.n_kept, "dropped": dict(self.dropped)}


def _prepare_chunk(args: tuple[list[str], str, int]) -> list[tuple[str, str, str]]:
    """Worker: (status, canonical SMILES, space-joined tokens) for each line."""
    # One definition of a valid molecule for training data, metrics and generation.
    from molvae.chemistry import canonicalize

    lines, representation, max_tokens = args
    tokenizer = get_tokenizer(representation)
    out = []
    for line in lines:
        if not line:
            out.append(("empty", "", ""))
            continue
        canonical = canonicalize(line)
        if canonical is None:
            out.append(("invalid", "", ""))
            continue
        try:
            tokens = tokenizer.tokenize(tokenizer.from_smiles(canonical))
        except MolvaeError:
            out.append(("untokenizable", canonical, ""))
            continue
        # +2 for BOS/EOS: max_tokens bounds the decoder's sequence length.
        if len(tokens) + 2 > max_tokens:
            out.append(("too_long", canonical, ""))
            continue
        out.append(("ok", canonical, " ".join(tokens)))
    return out


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


@dataclass
class TokenizedData:
    """Molecules as one flat id array plus offsets; ``smiles`` are canonical SMILES."""

    ids: np.ndarray  # int16, concatenated token ids (no BOS/EOS)
    offsets: np.ndarray  # int64, len n+1
    smiles: list[str]
    vocab: Vocabulary

    def __len__(self) -> int:
        return len(self.smiles)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, index: np.ndarray) -> TokenizedData:
        index = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = self.ids[_gather_index(self.offsets[index], lengths)] if len(index) else self.ids[:0]
        return TokenizedData(ids, offsets, [self.smiles[i] for i in index], self.vocab)

    def tokens(self, i: int) -> list[str]:
        return [self.vocab.tokens[t] for t in self.ids[self.offsets[i] : self.offsets[i + 1]]]


def _gather_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat indices of the ranges [start, start+length) without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    out_starts = np.cumsum(lengths) - lengths
    total = int(lengths.sum())
    return np.arange(total, dtype=np.int64) + np.repeat(np.asarray(starts, dtype=np.int64) - out_starts, lengths)


def prepare_molecules(
    smiles: Sequence[str],
    representation: str = "smiles",
    max_tokens: int = 120,
    vocab: Vocabulary | None = None,
    source: str = "input",
    n_jobs: int | None = None,
) -> tuple[TokenizedData, DataSummary]:
    """Canonicalize, convert, tokenize and encode molecules; count every drop.

    A molecule met again (another spelling of it included) is dropped and counted: a repeat
    would weigh it twice in training and could land in both the training and the
    validation split. With ``vocab`` given, molecules with tokens outside it are dropped and counted
    (fine-tuning / resuming); otherwise the vocabulary is built from the kept data.
    """
    summary = DataSummary(source=source, n_read=len(smiles))
    chunk_size = 5_000
    jobs = (os.cpu_count() or 1) if n_jobs is None else max(1, n_jobs)
    tasks = ((chunk, representation, max_tokens) for chunk in _chunks(smiles, chunk_size))
    drops: Counter[str] = Counter()
    kept_smiles: list[str] = []
    kept_tokens: list[str] = []
    if jobs > 1 and len(smiles) >= PARALLEL_THRESHOLD:
        # spawn: the parent may hold OpenMP threads (torch) that fork would copy in a broken state.
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results: Iterator[list[tuple[str, str, str]]] = pool.map(_prepare_chunk, tasks)
            _collect(results, drops, kept_smiles, kept_tokens)
    else:
        _collect(map(_prepare_chunk, tasks), drops, kept_smiles, kept_tokens)

    if vocab is None:
        vocab = Vocabulary.build(t.split(" ") for t in kept_tokens)
    index = vocab.index
    lengths = np.fromiter((t.count(" ") + 1 for t in kept_tokens), dtype=np.int64, count=len(kept_tokens))
    flat = np.empty(int(lengths.sum()), dtype=np.int16)
    keep = np.ones(len(kept_tokens), dtype=bool)
    pos = 0
    for i, joined in enumerate(kept_tokens):
        try:
            row = [index[t] for t in joined.split(" ")]
        except KeyError:
            keep[i] = False
            drops["unknown_token"] += 1
            continue
        flat[pos : pos + len(row)] = row
        pos += len(row)
    flat = flat[:pos]
    lengths = lengths[keep]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    kept = [s for s, k in zip(kept_smiles, keep) if k]
    summary.n_kept = len(kept)
    summary.dropped = {reason: drops.get(reason, 0) for reason in DROP_REASONS}
    return TokenizedData(flat, offsets, kept, vocab), summary


def _collect(results, drops: Counter, kept_smiles: list[str], kept_tokens: list[str]) -> None:
    seen: set[str] = set()
    for chunk in results:
        for status, canonical, joined in chunk:
            if status == "ok" and canonical in seen:
                drops["duplicate"] += 1
            elif status == "ok":
                seen.add(canonical)
                kept_smiles.append(canonical)
                kept_tokens.append(joined)
            else:
                drops[status] += 1


# -------------------------------------------------------------------------- cache
def default_cache_dir() -> Path:
    """molvae's cache folder: ``$MOLVAE_CACHE``, else ``~/.cache/molvae``."""
    return Path(os.environ.get("MOLVAE_CACHE", Path.home() / ".cache" / "molvae"))


def _cache_key(
    path: Path,
    column: str | None,
    limit: int | None,
    representation: str,
    max_tokens: int,
    sample: tuple[int, int] | None = None,
) -> str:
    stat = path.stat()
    ident = {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "column": column,
        "limit": limit,
        **({"sample": list(sample)} if sample is not None else {}),  # absent: keys of older caches stay valid
        "representation": representation,
        "max_tokens": max_tokens,
        "version": CACHE_FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def _to_bytes_array(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _save_cache(file: Path, data: TokenizedData, summary: DataSummary) -> None:
    from molvae.checkpoint import atomic_write

    meta = json.dumps({"vocab": data.vocab.tokens, "summary": summary.to_dict()})
    buf = io.BytesIO()
    np.savez(
        buf,
        ids=data.ids,
        offsets=data.offsets,
        smiles=_to_bytes_array("\n".join(data.smiles)),
        meta=_to_bytes_array(meta),
    )
    atomic_write(file, buf.getvalue())


def _load_cache(file: Path) -> tuple[TokenizedData, DataSummary]:
    # allow_pickle=False: a cache file is data only, never code.
    with np.load(file, allow_pickle=False) as npz:
        meta = json.loads(npz["meta"].tobytes().decode("utf-8"))
        smiles_blob = npz["smiles"].tobytes().decode("utf-8")
        data = TokenizedData(
            ids=npz["ids"],
            offsets=npz["offsets"],
            smiles=smiles_blob.split("\n") if smiles_blob else [],
            vocab=Vocabulary(meta["vocab"]),
        )
    s = meta["summary"]
    return data, DataSummary(s["source"], s["n_read"], s["n_kept"], s["dropped"])


# --------------------------------------------------------------------- token files
def save_token_file(path: str | Path, data: TokenizedData, summary: DataSummary, representation: str) -> Path:
    """Write ``data`` as a token file (:mod:`molvae.tokenfile`), which :func:`load_dataset` reads without RDKit.

    The SMILES are stored only where joining a molecule's tokens does not give them back.
    """
    joined = joined_tokens(data.ids, data.offsets, data.vocab.tokens)
    smiles = None if joined == list(data.smiles) else list(data.smiles)
    content = TokenArrays(data.ids, data.lengths, data.vocab.tokens, smiles, summary.to_dict())
    return write_token_file(path, content, representation)


def load_token_file(
    path: Path, representation: str, max_tokens: int, limit: int | None, sample: tuple[int, int] | None
) -> tuple[TokenizedData, DataSummary]:
    """A token file's molecules as :func:`load_dataset` gives them: the first ``limit``, or a seeded random
    ``sample`` (size, seed), without those longer than ``max_tokens`` (counted as dropped)."""
    content = read_token_file(path, representation)
    n = len(content.lengths)
    chosen = np.arange(n)
    if limit is not None:
        chosen = chosen[:limit]
    elif sample is not None:
        chosen = np.sort(np.random.default_rng(sample[1]).choice(n, size=min(sample[0], n), replace=False))
    index = chosen[content.lengths[chosen] + 2 <= max_tokens]  # +2 for BOS/EOS, as when it was prepared
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(content.lengths, out=offsets[1:])
    smiles = content.smiles if content.smiles is not None else [""] * n  # the joined tokens, filled in below
    data = TokenizedData(content.ids, offsets, smiles, Vocabulary(content.vocab))
    if len(index) < n:
        data = data.subset(index)
    if content.smiles is None:
        data.smiles = joined_tokens(data.ids, data.offsets, content.vocab)
    s = content.summary
    # A selection reads only what it chose; the whole file stands for the source it was prepared from.
    n_read = int(s.get("n_read", n)) if len(chosen) == n else len(chosen)
    dropped = dict(s.get("dropped", {})) if len(chosen) == n else {}
    dropped["too_long"] = dropped.get("too_long", 0) + len(chosen) - len(index)
    return data, DataSummary(str(path), n_read, len(data), dropped)


def remap_vocabulary(data: TokenizedData, vocab: Vocabulary) -> tuple[TokenizedData, int]:
    """Re-express ``data`` in ``vocab``; molecules with tokens outside it are dropped (count returned)."""
    if data.vocab == vocab:
        return data, 0
    table = np.array([vocab.index.get(t, -1) for t in data.vocab.tokens], dtype=np.int64)
    mapped = table[data.ids]
    bad_token = mapped < 0
    mol_of_token = np.repeat(np.arange(len(data)), data.lengths)
    bad_mol = np.zeros(len(data), dtype=bool)
    bad_mol[mol_of_token[bad_token]] = True
    kept = TokenizedData(mapped.astype(np.int16), data.offsets, data.smiles, vocab).subset(np.flatnonzero(~bad_mol))
    return kept, int(bad_mol.sum())


def load_dataset(
    data: str,
    representation: str = "smiles",
    column: str | None = None,
    max_tokens: int = 120,
    limit: int | None = None,
    vocab: Vocabulary | None = None,
    cache_dir: Path | None = None,
    n_jobs: int | None = None,
    sample: int | None = None,
    sample_seed: int = 0,
) -> tuple[TokenizedData, DataSummary]:
    """Read, clean and tokenize a data source (``moses`` or a path), cached as integer arrays.

    A ``.npz`` path is a token file (:mod:`molvae.tokenfile`), read as prepared: no RDKit needed.

    ``limit`` keeps the first N records; ``sample`` a seeded random N (:func:`sample_smiles`),
    which is what a representative subset of an ordered file such as MOSES needs.
    """
    if limit is not None and sample is not None:
        raise ConfigError("give either a limit (first N records) or a sample size (random N records), not both")
    sampling = None if sample is None else (int(sample), int(sample_seed))
    path, default_column = resolve_data_source(data)
    column = column or default_column
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    cache_file = None
    result = None
    if path.is_file() and path.suffix.lower() == TOKEN_FILE_SUFFIX:
        # Already cleaned and tokenized (where RDKit was): read as it is, no cache.
        result, summary = load_token_file(path, representation, max_tokens, limit, sampling)
    elif path.is_file():
        cache_file = (
            cache_dir / f"tokenized-{_cache_key(path, column, limit, representation, max_tokens, sampling)}.npz"
        )
    if result is None and cache_file is not None and cache_file.is_file():
        try:
            result, summary = _load_cache(cache_file)
            log.info("loaded tokenized data from cache %s", cache_file)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable cache %s (%s)", cache_file, exc)
            result = None
    if result is None:
        if sampling is not None:
            smiles = sample_smiles(path, sampling[0], seed=sampling[1], column=column)
        else:
            smiles = read_smiles(path, column=column, limit=limit)
        if not smiles:
            raise DataError(f"{path}: no molecules found (empty file?)")
        result, summary = prepare_molecules(smiles, representation, max_tokens, None, str(data), n_jobs)
        if cache_file is not None:
            try:
                _save_cache(cache_file, result, summary)
            except OSError as exc:
                log.warning("could not write cache %s (%s)", cache_file, exc)
    if vocab is not None:
        result, n_unknown = remap_vocabulary(result, vocab)
        summary = DataSummary(summary.source, summary.n_read, len(result), dict(summary.dropped))
        summary.dropped["unknown_token"] = summary.dropped.get("unknown_token", 0) + n_unknown
    if len(result) == 0:
        raise DataError(f"{data}: no usable molecules left after cleaning\n{summary.format()}")
    return result, summary


def train_val_split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic random split of ``range(n)`` by seed (sorted index arrays)."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# ------------------------------------------------------------------------ batching
def length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, shuffle: bool = True, bucket_batches: int = 50
) -> list[np.ndarray]:
    """Batches of similar-length molecules, in a random order fixed by (seed, epoch).

    Molecules are shuffled, cut into pools of ``bucket_batches`` batches, sorted by
    length inside each pool and cut into batches; the batch order is shuffled again.
    Padding per batch stays small while every epoch still sees a new mix.
    """
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    pool = batch_size * bucket_batches
    batches: list[np.ndarray] = []
    for start in range(0, n, pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(data: TokenizedData, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Padded ``[B, L+2]`` int64 array ``BOS x.. EOS PAD..`` and lengths ``n+2``."""
    lengths = data.lengths[index]
    width = int(lengths.max()) + 2 if len(index) else 2
    out = np.full((len(index), width), PAD_ID, dtype=np.int64)
    out[:, 0] = BOS_ID
    pos = np.arange(width - 2)
    mask = pos[None, :] < lengths[:, None]
    body = out[:, 1:-1]
    body[mask] = data.ids[_gather_index(data.offsets[index], lengths)]
    out[np.arange(len(index)), lengths + 1] = EOS_ID
    return out, lengths + 2
