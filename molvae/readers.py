"""Reading molecule files: SMILES lists, CSV/TSV tables, SD files and parquet, optionally gzipped; the MOSES splits.

Every reader streams its records (memory stays bounded by what the caller keeps) and
every problem with a file is an :class:`~molvae.errors.InputFileError` naming the
file, and the line where there is one. The format comes from the file's suffix, or
from its first bytes (:func:`guess_suffix`) for input without a name.
"""

from __future__ import annotations

import csv
import gzip
import importlib.metadata
import io
import itertools
import math
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from molvae.errors import ConfigError, DataError, InputFileError, MolvaeError

MOSES_SPLITS = {"train": "train.csv.gz", "test": "test.csv.gz", "test_scaffolds": "test_scaffolds.csv.gz"}
# Largest CSV field read (16 MiB): far beyond any SMILES, small enough that a file
# without line breaks fails with a line number instead of filling memory.
CSV_FIELD_LIMIT = 1 << 24


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
        raise DataError("the MOSES data set needs the molsets wheel: pip install --no-deps molsets==0.3.1") from None
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
            raise InputFileError(
                f"{path}, line {lineno}: not UTF-8 text (byte 0x{byte:02x} at character "
                f"{bad.start() + 1}); save the file as UTF-8"
            )
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
            raise InputFileError(
                f"{path}: several SMILES columns ({', '.join(matches)}); choose one with --smiles-column"
            )
        if matches:
            return matches[0]
    hint = "choose one with --smiles-column"
    if len(columns) == 1:
        # One column whose name holds another separator: the delimiter is probably wrong.
        seps = [
            name for sep, name in ((";", "';'"), ("\t", "tabs"), ("|", "'|'"), (",", "','")) if sep in str(columns[0])
        ]
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


def iter_smiles(
    path: str | os.PathLike, column: str | None = None, limit: int | None = None, allow_empty: bool = True
) -> Iterator[str]:
    """Yield one SMILES per record of a molecule file, reading lazily (memory stays bounded).

    Formats and rules as :func:`read_smiles`. Every problem is an
    :class:`~molvae.errors.InputFileError` naming the file (and the line where
    there is one). With ``allow_empty=False`` a file without records is an error.
    """
    yield from _records(Path(path), column, (), limit, allow_empty)


def iter_records(
    path: str | os.PathLike,
    column: str | None = None,
    keep: Sequence[str] = (),
    limit: int | None = None,
    allow_empty: bool = True,
) -> Iterator[tuple[str, tuple]]:
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


def _records(
    path: Path, column: str | None, keep: tuple[str, ...], limit: int | None, allow_empty: bool
) -> Iterator[Any]:
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
        raise InputFileError(
            f"{path}: a {kind or 'plain text'} file has no columns; the one field that can be kept "
            f"is 'name' (the text after the SMILES), not {', '.join(repr(k) for k in keep if k != 'name')}"
        )
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


def read_smiles(
    path: str | os.PathLike, column: str | None = None, limit: int | None = None, allow_empty: bool = True
) -> list[str]:
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


def iter_record_chunks(
    path: str | os.PathLike,
    chunk_size: int,
    column: str | None = None,
    keep: Sequence[str] = (),
    allow_empty: bool = False,
) -> Iterator[tuple[list[str], dict[str, list]]]:
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
        raise InputFileError(
            f"{path}: no column {', '.join(repr(k) for k in missing)} to keep; "
            f"columns found: {', '.join(map(str, columns))}"
        )


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
        # n counts the records; it is read after the loop
        for n, mol in enumerate(_unwrapped_read_errors(Chem.ForwardSDMolSupplier(fh)), start=1):  # noqa: B007
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
            values = tuple(
                (mol.GetProp("_Name") if k == "name" else mol.GetProp(k) if mol.HasProp(k) else "") for k in keep
            )
        yield (smiles, values) if keep else smiles
    missing = [t for t in tags if t not in seen]
    if missing and n_read:
        found = ", ".join(sorted(seen)[:20]) or "none"
        raise InputFileError(
            f"{path}: no record has the data field {', '.join(repr(t) for t in missing)} to keep; "
            f"data fields found: {found} (and 'name', the title line)"
        )


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


def _delimited_records(
    lines: Iterator[str], sep: str, column: str | None, keep: tuple[str, ...], path: Path
) -> Iterator[Any]:
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
