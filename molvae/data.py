"""Molecule data: reading files, the MOSES ZINC subset, cleaning, tokenized arrays, batches.

Flow: file lines → RDKit canonical SMILES → representation string → tokens →
integer ids in one flat array with offsets (no per-molecule Python objects after
preparation, so epoch 2+ does no string work). Every dropped line is counted by
reason in a :class:`DataSummary`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.metadata
import io
import itertools
import json
import logging
import math
import multiprocessing
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from molvae.errors import ConfigError, DataError, InputFileError, MolvaeError
from molvae.tokenizers import BOS_ID, EOS_ID, PAD_ID, Vocabulary, get_tokenizer

log = logging.getLogger(__name__)

MOSES_SPLITS = {"train": "train.csv.gz", "test": "test.csv.gz", "test_scaffolds": "test_scaffolds.csv.gz"}
# Bumped whenever the cached array layout or cleaning rules change.
CACHE_FORMAT_VERSION = 2  # 2: repeated molecules dropped
# Below this many molecules worker start-up costs more than it saves.
PARALLEL_THRESHOLD = 20_000
# Largest CSV field read (16 MiB): far beyond any SMILES, small enough that a file
# without line breaks fails with a line number instead of filling memory.
CSV_FIELD_LIMIT = 1 << 24

DROP_REASONS = {
    "empty": "empty line",
    "invalid": "invalid SMILES (RDKit could not parse/sanitize)",
    "untokenizable": "could not be converted/tokenized",
    "too_long": "longer than max tokens",
    "unknown_token": "token outside the vocabulary",
    "duplicate": "repeats an earlier molecule (same canonical SMILES)",
}


# --------------------------------------------------------------------------- files
def moses_file(split: str = "train") -> Path:
    """Path of a MOSES split inside the installed ``molsets==0.3.1`` wheel.

    The ``moses`` package no longer imports on current pandas/RDKit, so it is
    located through package metadata and never imported.
    """
    if split not in MOSES_SPLITS:
        raise DataError(f"unknown MOSES split {split!r}; choose one of {sorted(MOSES_SPLITS)}")
    try:
        dist = importlib.metadata.distribution("molsets")
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            "the MOSES data set needs the molsets wheel: pip install --no-deps molsets==0.3.1"
        ) from None
    path = Path(str(dist.locate_file(f"moses/dataset/data/{MOSES_SPLITS[split]}")))
    if not path.is_file():
        raise DataError(f"molsets is installed but {path} is missing; reinstall molsets==0.3.1")
    return path


def resolve_data_source(data: str) -> tuple[Path, str | None]:
    """Map ``moses``/``moses-train``/``moses-test``/``moses-test_scaffolds`` or a path to (file, column)."""
    name = data.lower()
    if name in ("moses", "moses-train"):
        return moses_file("train"), "SMILES"
    if name.startswith("moses-") and name[6:] in MOSES_SPLITS:
        return moses_file(name[6:]), "SMILES"
    return Path(data), None


def _open_text(path: Path) -> io.TextIOBase:
    # utf-8-sig: files saved by Excel start with a byte-order mark. surrogateescape: a
    # bad byte becomes a lone surrogate instead of failing a whole read-ahead chunk, so
    # _checked_lines can name the exact line it is on. newline="": universal line
    # splitting, with the line endings left for the csv module.
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="surrogateescape", newline="")
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _checked_lines(fh: io.TextIOBase, path: Path) -> Iterator[str]:
    for lineno, line in enumerate(fh, start=1):
        bad = _UNDECODABLE.search(line)
        if bad:
            byte = ord(bad.group()) - 0xDC00
            raise InputFileError(f"{path}, line {lineno}: not UTF-8 text (byte 0x{byte:02x} at character "
                                 f"{bad.start() + 1}); save the file as UTF-8")
        yield line


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


#: Column names taken as the SMILES column (any case) when none is given, the first present
#: winning: `molvae properties` writes both ``smiles`` (as given) and ``canonical_smiles``.
SMILES_COLUMN_NAMES = ("smiles", "canonical_smiles", "smi")


def _pick_column(columns: Sequence[str], wanted: str | None, path: Path) -> str:
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise InputFileError(f"{path}: no column {wanted!r}; columns found: {', '.join(map(str, columns))}")
    for name in SMILES_COLUMN_NAMES:
        matches = [c for c in columns if str(c).strip().lower() == name]
        if len(matches) > 1:  # "SMILES" and "smiles": nothing says which
            raise InputFileError(f"{path}: several SMILES columns ({', '.join(matches)}); choose one with "
                                 "--smiles-column")
        if matches:
            return matches[0]
    hint = "choose one with --smiles-column"
    if len(columns) == 1:
        # One column whose name holds another separator: the delimiter is probably wrong.
        seps = [name for sep, name in ((";", "';'"), ("\t", "tabs"), ("|", "'|'"), (",", "','")) if sep in str(columns[0])]
        if seps:
            hint = f"the file seems to be separated by {seps[0]}, not by its extension's delimiter"
    raise InputFileError(f"{path}: no SMILES column; columns found: {', '.join(map(str, columns))} ({hint})")


TEXT_KINDS = (".smi", ".smiles", ".txt", "")
TABLE_KINDS = (".csv", ".tsv")
SD_KINDS = (".sdf", ".sd")
FORMATS = ".smi, .txt, .csv, .tsv, .sdf (optionally .gz) or .parquet"


def guess_suffix(head: bytes, column: str | None = None) -> str:
    """The file suffix that names the format of a molecule file beginning with ``head`` (for input without a name).

    gzip and parquet are told by their magic bytes; an SD file by its ``M  END`` or
    ``$$$$`` lines. With ``column`` given it is a table (``.tsv`` if its first line
    has a tab, else ``.csv``); without, a table is one whose first line holds a SMILES
    column name (as for named files), alone or among tab- or comma-separated fields.
    Anything else is read as SMILES lines (``.smi``).
    """
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = zlib.decompressobj(wbits=31).decompress(head, 65_536)
        except zlib.error:
            inner = b""  # corrupt: the gzip reader will say so, with the file's name
        return guess_suffix(inner, column) + ".gz"
    if head.startswith(b"PAR1"):
        return ".parquet"
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = text.splitlines()
    if any(line.rstrip() in ("$$$$", "M  END") or line.rstrip().endswith(("V2000", "V3000")) for line in lines):
        return ".sdf"
    first = lines[0] if lines else ""
    if column:
        # A named column means a table; its reader says so if the header lacks it.
        return ".tsv" if "\t" in first else ".csv"
    # A first line of one field under a SMILES header (`cut -d, -f1` of a table) is a .csv too.
    sep, suffix = ("\t", ".tsv") if "\t" in first else (",", ".csv")
    if any(f.strip().strip('"').lower() in SMILES_COLUMN_NAMES for f in first.split(sep)):
        return suffix
    return ".smi"


def iter_smiles(path: str | os.PathLike, column: str | None = None, limit: int | None = None,
                allow_empty: bool = True) -> Iterator[str]:
    """Yield one SMILES per record of a molecule file, reading lazily (memory stays bounded).

    Formats and rules as :func:`read_smiles`. Every problem is an
    :class:`~molvae.errors.InputFileError` naming the file (and the line where
    there is one). With ``allow_empty=False`` a file without records is an error.
    """
    yield from _records(Path(path), column, (), limit, allow_empty)


def iter_records(path: str | os.PathLike, column: str | None = None, keep: Sequence[str] = (),
                 limit: int | None = None, allow_empty: bool = True) -> Iterator[tuple[str, tuple]]:
    """Like :func:`iter_smiles`, with the values of the ``keep`` columns of each record: ``(smiles, values)``.

    ``keep`` names columns of a .csv/.tsv/.parquet file (an ID, a measured activity...), so
    outputs can carry them. A .smi/.txt file has one column to keep, ``name``: the text after
    the SMILES on each line (the title field of the SMILES file format), ``""`` where absent.
    In an SD file, ``name`` is each record's title line and any other name a data field
    (``> <pIC50>``), ``""`` in records without it. A column that is not in the file is an
    error that lists the columns there are.
    """
    keep = tuple(keep)
    if keep:
        yield from _records(Path(path), column, keep, limit, allow_empty)
    else:
        for smiles in _records(Path(path), column, (), limit, allow_empty):
            yield smiles, ()


def _records(path: Path, column: str | None, keep: tuple[str, ...], limit: int | None,
             allow_empty: bool) -> Iterator[Any]:
    """The records of a molecule file with every check: SMILES strings, or (SMILES, values) when ``keep`` is given.

    Two shapes so that the common case, SMILES alone, builds no tuple per record
    (reading MOSES's 1.58M lines took 2.6 s with one against 1.8 s, in one measurement).
    """
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, expected a molecule file")
    kind = _base_suffix(path)
    if kind not in (".parquet", *TEXT_KINDS, *TABLE_KINDS, *SD_KINDS):
        raise InputFileError(f"{path}: unsupported file type {kind!r}; use {FORMATS}")
    if kind in SD_KINDS and column is not None:
        raise InputFileError(f"{path}: an SD file holds molecules, not a SMILES column; drop the column option")
    if kind in TEXT_KINDS and any(k != "name" for k in keep):
        raise InputFileError(f"{path}: a {kind or 'plain text'} file has no columns; the one field that can be kept "
                             f"is 'name' (the text after the SMILES), not {', '.join(repr(k) for k in keep if k != 'name')}")
    n = 0
    try:
        if kind == ".parquet":
            records = _parquet_records(path, column, keep)
        elif kind in SD_KINDS:
            records = _sd_records(path, keep)
        else:
            records = _text_records(path, kind, column, keep)
        for record in records:
            if limit is not None and n >= limit:
                break
            n += 1
            yield record
    except gzip.BadGzipFile:
        raise InputFileError(f"{path}: has a .gz suffix but is not gzip-compressed") from None
    except MolvaeError:
        raise
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        # EOFError: a truncated .gz; zlib.error: a corrupt one; ValueError covers pyarrow's ArrowInvalid for a
        # corrupt parquet file.
        raise InputFileError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    if n == 0 and not allow_empty:
        raise InputFileError(f"{path}: no molecules found (empty file?)")


def is_smiles_list(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a plain SMILES list (.smi, .txt...: a molecule per line, no columns), where a
    blank line is no record at all, unlike an empty cell of a table."""
    return _base_suffix(Path(path)) in TEXT_KINDS


def record_fields(path: str | os.PathLike, column: str | None = None) -> list[str]:
    """The names :func:`iter_records` can keep from a molecule file: a table's columns, ``name`` for
    a .smi/.txt file, ``name`` and every data field that occurs in an SD file (one pass over it).
    ``column``: the SMILES column, as :func:`iter_records` will be given it."""
    path = Path(path)
    for _ in _records(path, column, (), 0, True):  # the file checks and their errors, without reading it all
        pass
    kind = _base_suffix(path)
    try:
        if kind == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(path).schema_arrow.names)
        if kind in TABLE_KINDS:
            with _open_text(path) as fh:
                return next(csv.reader(_checked_lines(fh, path), delimiter="\t" if kind == ".tsv" else ","), [])
        if kind in SD_KINDS:
            fields: dict[str, None] = {"name": None}
            for mol in _sd_molecules(path):
                if mol is not None:
                    fields.update(dict.fromkeys(mol.GetPropNames()))
            return list(fields)
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        raise InputFileError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    return ["name"]


def read_smiles(path: str | os.PathLike, column: str | None = None, limit: int | None = None,
                allow_empty: bool = True) -> list[str]:
    """Read one SMILES per record from .smi/.txt/.csv/.tsv/.sdf (optionally .gz) or .parquet.

    Blank records are kept as ``""`` so they are counted, not silently dropped.
    For .smi/.txt the first whitespace-separated field of each line is the SMILES;
    a first line reading ``smiles`` is taken as a header. With
    ``allow_empty=False`` a file without records is an error.
    """
    return list(iter_smiles(path, column, limit, allow_empty))


def sample_smiles(path: str | os.PathLike, n: int, seed: int = 0, column: str | None = None) -> list[str]:
    """A seeded uniform random sample of ``n`` records of a molecule file (all records if it has fewer).

    Use this, not ``limit=n``, when a subset must represent the file: molecule files
    are often ordered. ZINC keeps similar molecules together and MOSES kept its
    order: the first 5,000 MOSES training lines are at FCD 5.9 from the test set,
    a random 5,000 at 0.26 (5,000 test molecules: 0.25). One streaming pass
    (reservoir sampling, Li's algorithm L), so memory holds only the sample.
    """
    if not (isinstance(n, int) and n >= 0):
        raise ConfigError(f"sample size must be a non-negative integer, got {n!r}")
    records = iter_smiles(path, column)
    sample = list(itertools.islice(records, n))
    if n == 0 or len(sample) < n:
        return sample
    rng = np.random.default_rng(seed)

    def log_u() -> float:  # log of a uniform draw in (0, 1]
        return math.log(1.0 - rng.random())

    def next_skip(w: float) -> int:  # records passed over before the next replacement
        return math.floor(log_u() / math.log1p(-w)) if w < 1.0 else 0

    w = math.exp(log_u() / n)
    skip = next_skip(w)
    for record in records:
        if skip > 0:
            skip -= 1
            continue
        sample[int(rng.integers(n))] = record
        w *= math.exp(log_u() / n)
        skip = next_skip(w)
    return sample


def iter_record_chunks(path: str | os.PathLike, chunk_size: int, column: str | None = None, keep: Sequence[str] = (),
                       allow_empty: bool = False) -> Iterator[tuple[list[str], dict[str, list]]]:
    """:func:`iter_records` in chunks of at most ``chunk_size``: (SMILES, {kept column: values})."""
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ConfigError(f"chunk size must be a positive integer, got {chunk_size!r}")
    records = iter_records(path, column, keep, allow_empty=allow_empty)
    while chunk := list(itertools.islice(records, chunk_size)):
        values = list(zip(*(v for _, v in chunk))) if keep else []
        yield [smiles for smiles, _ in chunk], {k: list(v) for k, v in zip(keep, values)}


def count_records(path: str | os.PathLike, column: str | None = None, keep: Sequence[str] = ()) -> int:
    """Number of records in a molecule file (at least one, else an error), read once without keeping them.

    Bulk commands call it before any work: it sizes their output and progress bar, and
    a bad line anywhere in the file (or a ``keep`` column it lacks) fails the command
    before hours of work, not after.
    """
    return sum(1 for _ in _records(Path(path), column, tuple(keep), None, False))


def _missing_columns(keep: Sequence[str], columns: Sequence[str], path: Path) -> None:
    missing = [k for k in keep if k not in columns]
    if missing:
        raise InputFileError(f"{path}: no column {', '.join(repr(k) for k in missing)} to keep; "
                             f"columns found: {', '.join(map(str, columns))}")


def _parquet_records(path: Path, column: str | None, keep: tuple[str, ...]) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    col = _pick_column(schema.names, column, path)
    _missing_columns(keep, schema.names, path)
    col_type = schema.field(col).type
    if not (pa.types.is_string(col_type) or pa.types.is_large_string(col_type)):
        raise InputFileError(f"{path}: column {col!r} holds {col_type}, not SMILES strings")
    names = list(dict.fromkeys([col, *keep]))  # a column is read once, even if kept as well
    for batch in pf.iter_batches(batch_size=65_536, columns=names):
        columns = {name: batch.column(i).to_pylist() for i, name in enumerate(names)}
        smiles = ["" if v is None else str(v).strip() for v in columns[col]]
        if keep:
            yield from zip(smiles, zip(*(columns[k] for k in keep)))
        else:
            yield from smiles


def _unwrapped_read_errors(supplier: Any) -> Iterator[Any]:
    """Items of an RDKit supplier reading a Python file, with the file's own errors re-raised.

    Boost.Python wraps an exception from the file object (a bad or truncated .gz) in a
    SystemError; the reader's handlers expect the original one.
    """
    try:
        yield from supplier
    except SystemError as exc:
        if isinstance(exc.__context__, (EOFError, OSError, zlib.error)):
            raise exc.__context__ from None
        raise


def _sd_molecules(path: Path) -> Iterator[Any]:
    """The molecules of an SD file (None for a record RDKit cannot read), one at a time.

    A file whose records are all unreadable, or that has text but no record, is not an SD
    file: an :class:`InputFileError` once it has been read through.
    """
    from rdkit import Chem

    import molvae.chemistry  # noqa: F401  (silences RDKit's per-record error log)

    n = n_read = 0
    with gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb") as fh:
        has_text = bool(fh.peek(4096).strip())
        for n, mol in enumerate(_unwrapped_read_errors(Chem.ForwardSDMolSupplier(fh)), start=1):
            n_read += mol is not None
            yield mol
    if n and not n_read:
        raise InputFileError(f"{path}: none of its {n:,} records could be read as a molecule; is it an SD file?")
    if not n and has_text:
        raise InputFileError(f"{path}: no SD record found (records end with a '$$$$' line); is it an SD file?")


def _sd_records(path: Path, keep: tuple[str, ...]) -> Iterator[Any]:
    """SD file records as SMILES (RDKit's isomeric SMILES of each molecule), read one at a time.

    A record RDKit cannot read (a broken mol block, a molecule that fails sanitization)
    becomes the text ``<SD record N: not read>``: never valid SMILES, so it is counted and
    reported as invalid like a bad line of a SMILES file, and its row says which record it was.
    """
    from rdkit import Chem

    tags = [k for k in keep if k != "name"]
    seen: set[str] = set()
    n_read = 0
    for n, mol in enumerate(_sd_molecules(path), start=1):
        if mol is None:
            smiles = f"<SD record {n}: not read>"
            values = ("",) * len(keep)
        else:
            n_read += 1
            smiles = Chem.MolToSmiles(mol)
            if tags:
                seen.update(mol.GetPropNames())
            values = tuple((mol.GetProp("_Name") if k == "name" else mol.GetProp(k) if mol.HasProp(k) else "")
                           for k in keep)
        yield (smiles, values) if keep else smiles
    missing = [t for t in tags if t not in seen]
    if missing and n_read:
        found = ", ".join(sorted(seen)[:20]) or "none"
        raise InputFileError(f"{path}: no record has the data field {', '.join(repr(t) for t in missing)} to keep; "
                             f"data fields found: {found} (and 'name', the title line)")


def _text_records(path: Path, kind: str, column: str | None, keep: tuple[str, ...]) -> Iterator[Any]:
    with _open_text(path) as fh:
        lines = _checked_lines(fh, path)
        if kind in TABLE_KINDS:
            yield from _delimited_records(lines, "\t" if kind == ".tsv" else ",", column, keep, path)
        else:
            yield from _line_records(lines, bool(keep))


def _line_records(lines: Iterator[str], name: bool) -> Iterator[Any]:
    for i, line in enumerate(lines):
        fields = line.split(maxsplit=1)
        if i == 0 and fields and fields[0].lower() == "smiles":
            continue
        smiles = fields[0] if fields else ""
        yield (smiles, (fields[1].strip() if len(fields) > 1 else "",)) if name else smiles


def _delimited_records(lines: Iterator[str], sep: str, column: str | None, keep: tuple[str, ...],
                       path: Path) -> Iterator[Any]:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(lines, delimiter=sep)
    try:
        header = next(reader, None)
        if header is None:
            raise InputFileError(f"{path}: file is empty")
        idx = header.index(_pick_column(header, column, path))
        _missing_columns(keep, header, path)
        kept = [header.index(k) for k in keep]
        for row in reader:
            smiles = row[idx].strip() if idx < len(row) else ""
            yield (smiles, tuple(row[j] if j < len(row) else "" for j in kept)) if keep else smiles
    except csv.Error as exc:  # e.g. a field longer than CSV_FIELD_LIMIT, a NUL byte
        raise InputFileError(f"{path}, line {reader.line_num}: cannot parse ({exc})") from None


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

    def subset(self, index: np.ndarray) -> "TokenizedData":
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
    return Path(os.environ.get("MOLVAE_CACHE", Path.home() / ".cache" / "molvae"))


def _cache_key(path: Path, column: str | None, limit: int | None, representation: str, max_tokens: int,
               sample: tuple[int, int] | None = None) -> str:
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
    if path.is_file():
        cache_file = cache_dir / f"tokenized-{_cache_key(path, column, limit, representation, max_tokens, sampling)}.npz"
    if cache_file is not None and cache_file.is_file():
        try:
            result, summary = _load_cache(cache_file)
            log.info("loaded tokenized data from cache %s", cache_file)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable cache %s (%s)", cache_file, exc)
            result = None
    else:
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
    lengths: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    bucket_batches: int = 50,
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
