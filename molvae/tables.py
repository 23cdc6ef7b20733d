"""Output tables (and ``.npy`` arrays) written chunk by chunk, atomically.

:class:`TableWriter` appends one DataFrame at a time to a temporary file beside
the target and renames it over the target only when every chunk is written, so
bulk commands hold one chunk of molecules in memory, and a killed or failed
command leaves either the old file or none, never a partial one. CSV, TSV and SD output
(``.csv``, ``.tsv``, ``.sdf``, each optionally with ``.gz``) is byte-for-byte the same
whatever the chunk size; ``.parquet`` output holds the same table (one row group per
chunk). Any other suffix is refused before work starts, rather than written as CSV under
a name that promises something else (a ``.smi`` reader would take the header for a molecule).
:class:`NpyWriter` does the same for a 2-D NumPy array of known shape.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import pandas as pd

from molvae.checkpoint import temp_file_beside
from molvae.errors import MolvaeError
from molvae.folders import RESUME_FILE, VOCAB_FILE, WEIGHTS_FILE


def _check_parent_dirs(path: Path) -> None:
    """A one-line error when the nearest existing ancestor of ``path`` is a file."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise MolvaeError(f"{path}: cannot create it, {parent} is a file")
            break


def check_output_file(path: str | os.PathLike, inputs: tuple[str | os.PathLike | None, ...] = ()) -> Path:
    """``path`` as a Path, or a one-line error if it is a directory, its parent is a file, or it is one of ``inputs``.

    An output that is an input file would replace the input (its other columns) once written.
    """
    path = Path(path)
    for given in inputs:
        if given is not None and path.exists() and Path(given).exists() and os.path.samefile(path, given):
            raise MolvaeError(
                f"{path} is also the input file; writing it would replace the input: choose another output"
            )
    if path.is_dir():
        raise MolvaeError(f"{path}: is a directory, expected an output file path")
    _check_parent_dirs(path)
    return path


TABLE_FORMATS = ".csv, .tsv, .sdf (optionally .gz) or .parquet"


def table_format(path: str | os.PathLike) -> str:
    """``"csv"``, ``"tsv"``, ``"sdf"`` or ``"parquet"`` from the name of an output table; a one-line error for any
    other."""
    from molvae.readers import _base_suffix

    base = _base_suffix(Path(path))  # the reader's rule: lower case, a final .gz set aside
    gz = Path(path).suffix.lower() == ".gz"
    if base in (".csv", ".tsv", ".sdf"):
        return base[1:]
    if base == ".parquet" and not gz:
        return "parquet"
    shown = base + ".gz" * gz
    what = f"as {shown}" if shown else "without a suffix"
    hint = " (a table with several columns, not a SMILES list)" if base in (".smi", ".txt") else ""
    raise MolvaeError(f"{path}: cannot write an output table {what}{hint}; name it {TABLE_FORMATS}")


#: The ``--out`` name of standard output (CSV), for the commands that stream a table.
STDOUT = "-"


def is_stdout(path: str | os.PathLike | None) -> bool:
    """Whether an output name means standard output (``-``)."""
    return path is not None and os.fspath(path) == STDOUT


def check_table_file(
    path: str | os.PathLike, inputs: tuple[str | os.PathLike | None, ...] = (), stdout_ok: bool = False
) -> Path:
    """:func:`check_output_file` for an output table, whose name must also give a format :func:`table_format` knows.

    With ``stdout_ok``, ``-`` stands for standard output (written as CSV by :class:`TableWriter`).
    """
    if stdout_ok and is_stdout(path):
        return Path(STDOUT)
    path = check_output_file(path, inputs)
    table_format(path)
    return path


#: Files only a trained model or a training run holds (``molvae train``, ``MolVAE.save``).
MODEL_FILES = (WEIGHTS_FILE, RESUME_FILE, VOCAB_FILE)


def check_output_dir(path: str | os.PathLike, create: bool = True, model_ok: bool = False) -> Path:
    """``path`` as a Path (created if missing, with ``create``); a one-line error if it or a parent is a file.

    A directory holding a model or a training run is refused unless ``model_ok`` (``molvae
    train``'s own run directory): other commands' outputs (config.json, metrics.csv...)
    would overwrite the run's files of the same names and break the model.
    """
    if not str(path).strip():
        raise MolvaeError("the output directory is empty ('')")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MolvaeError(f"{path}: is a file, expected an output directory")
    held = [name for name in MODEL_FILES if (path / name).exists()]
    if held and not model_ok:
        raise MolvaeError(f"{path} holds a trained model or training run ({held[0]}); choose another output directory")
    _check_parent_dirs(path)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def write_fully(stream: IO[bytes], data: bytes) -> None:
    """Write all of ``data`` to ``stream``, or raise.

    A buffered stream may take only part of the bytes and say so in its return value alone:
    on a pipe whose reader has gone, ``sys.stdout.buffer.write`` returns the count the pipe
    took; the next write raises :class:`BrokenPipeError` (on a full disk, ``OSError``).
    """
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if not written:  # None (a non-blocking stream that would block) or 0: no progress possible
            raise OSError(f"standard output took no more data after {len(data) - len(view):,} of {len(data):,} bytes")
        view = view[written:]


class TableWriter:
    """Append DataFrames to ``path`` (.csv, .tsv, .sdf, each optionally .gz, or .parquet) through a temporary file.

    In an SD file each row is a record: the molecule from ``molecule_column`` (an empty
    molecule where that SMILES does not parse, so records stay one per row, in order), a
    ``name`` column as the title line, and every column as a data field (NaN left out).

    >>> with TableWriter("props.csv") as out:
    ...     for chunk in chunks:
    ...         out.write(property_table(chunk))
    """

    def __init__(self, path: str | os.PathLike, molecule_column: str = "smiles"):
        # "-": CSV on standard output, written as it comes (for pipes), with no temporary file.
        self.to_stdout = is_stdout(path)
        self.path = Path(STDOUT) if self.to_stdout else check_output_file(path)
        self.format = "csv" if self.to_stdout else table_format(self.path)
        self.molecule_column = molecule_column
        self._sd: Any = None  # (RDKit SDWriter, the text buffer it writes to)
        self.rows = 0
        self._header_written = False
        self._tmp: Path | None = None
        self._raw: IO[bytes] | None = None
        self._gz: gzip.GzipFile | None = None
        self._parquet: Any = None
        self._schema: Any = None

    def __enter__(self) -> TableWriter:
        if self.to_stdout:
            sys.stdout.flush()  # anything printed before goes out before the table
            self._raw = sys.stdout.buffer
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file_beside(self.path)
        self._tmp = Path(tmp)
        self._raw = os.fdopen(fd, "wb")
        if self.path.suffix.lower() == ".gz":
            # mtime=0: the same table gives the same bytes on every run.
            self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", mtime=0, filename="")
        return self

    def write(self, df: pd.DataFrame) -> None:
        """Append the rows of ``df`` (the first call writes the header; later ones must have the same columns)."""
        if self.format == "parquet":
            self._write_parquet(df)
        elif self.format == "sdf":
            self._write_sd(df)
        else:
            text = df.to_csv(index=False, header=not self._header_written, sep="\t" if self.format == "tsv" else ",")
            self._emit(text.encode("utf-8"))
        self._header_written = True
        self.rows += len(df)

    def _emit(self, data: bytes) -> None:
        """Append encoded bytes: to the file (through gzip for .gz), or all of them to standard output."""
        if self.to_stdout:
            write_fully(self._raw, data)  # type: ignore[arg-type]
        else:
            (self._gz or self._raw).write(data)  # type: ignore[union-attr]

    def _write_sd(self, df: pd.DataFrame) -> None:
        from rdkit import Chem

        from molvae.chemistry import to_mol

        if not len(df):
            return
        if self.molecule_column not in df.columns:
            raise MolvaeError(
                f"{self.path}: an SD file needs a {self.molecule_column!r} column of SMILES; "
                f"the table has {', '.join(map(str, df.columns))}"
            )
        if self._sd is None:
            # One writer for the whole file: it numbers the data fields of each record.
            buffer = io.StringIO()
            self._sd = (Chem.SDWriter(buffer), buffer)
        writer, buffer = self._sd
        for row in df.itertuples(index=False):
            values = dict(zip(df.columns, row))
            smiles = values[self.molecule_column]
            mol = to_mol(smiles)
            if mol is None:
                mol = Chem.Mol()
            if "name" in values and not pd.isna(values["name"]):
                mol.SetProp("_Name", str(values["name"]))
            for key, value in values.items():
                if not (key == "name" or pd.isna(value)):
                    mol.SetProp(str(key), str(value))
            writer.write(mol)
        writer.flush()
        self._emit(buffer.getvalue().encode("utf-8"))
        buffer.seek(0)
        buffer.truncate()

    def _write_parquet(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._parquet is None:
            schema = pa.Table.from_pandas(df, preserve_index=False).schema
            # A column that is all None in the first chunk would be typed null and reject later strings.
            self._schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema])
            self._parquet = pq.ParquetWriter(self._raw, self._schema)
        self._parquet.write_table(pa.Table.from_pandas(df, schema=self._schema, preserve_index=False))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.to_stdout:
            if exc_type is None:
                self._raw.flush()  # type: ignore[union-attr]
            return
        assert self._raw is not None and self._tmp is not None
        try:
            if exc_type is None:
                if self.format == "parquet" and self._parquet is None:
                    self._write_parquet(pd.DataFrame())
                if self._parquet is not None:
                    self._parquet.close()
                if self._gz is not None:
                    self._gz.close()
            _commit(self._raw, self._tmp, self.path, ok=exc_type is None)
        finally:
            self._tmp.unlink(missing_ok=True)


def write_rows(path: str | os.PathLike, chunks: Any) -> int:
    """Write an iterable of DataFrames to ``path`` with a :class:`TableWriter`; returns the row count."""
    with TableWriter(path) as out:
        for df in chunks:
            out.write(df)
    return out.rows


def _commit(raw: IO[bytes], tmp: Path, path: Path, ok: bool) -> None:
    """Close a temporary file written beside ``path``; if the write went well, fsync it and rename it over ``path``."""
    if ok:
        raw.flush()
        os.fsync(raw.fileno())
    raw.close()
    if ok:
        os.replace(tmp, path)


class NpyWriter:
    """Append row blocks to a 2-D ``.npy`` array of ``n_rows`` x ``n_cols`` through a temporary file beside ``path``.

    The header, which holds the row count, is written first and each :meth:`write` appends
    its rows, so memory holds one block whatever the array's size (a memory-mapped output
    would keep every written page resident). ``np.load`` reads the file like any other. It
    is renamed onto ``path`` only when all ``n_rows`` rows are written: a failed or
    interrupted write leaves the old file or none, never a partial one.

    >>> with NpyWriter("z.npy", n_rows=len(smiles), n_cols=128) as out:
    ...     for chunk in chunks:
    ...         out.write(model.encode(chunk, errors="nan"))
    """

    def __init__(self, path: str | os.PathLike, n_rows: int, n_cols: int, dtype: np.dtype | str = "<f4"):
        self.path = Path(path)
        self.n_rows = n_rows
        self.n_cols = n_cols
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._tmp: Path | None = None
        self._raw: IO[bytes] | None = None

    def __enter__(self) -> NpyWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file_beside(self.path)
        self._tmp = Path(tmp)
        self._raw = os.fdopen(fd, "wb")
        np.lib.format.write_array_header_1_0(
            self._raw,
            {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": (self.n_rows, self.n_cols),
            },
        )
        return self

    def write(self, block: np.ndarray) -> None:
        """Append the rows of ``block`` ([rows, n_cols]), converted to the array's dtype."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.ndim != 2 or block.shape[1] != self.n_cols:
            raise MolvaeError(f"{self.path}: rows of {self.n_cols} columns expected, got shape {list(block.shape)}")
        if self.rows + len(block) > self.n_rows:
            raise MolvaeError(f"{self.path}: more rows than the {self.n_rows:,} its header announces")
        assert self._raw is not None
        self._raw.write(block.tobytes())
        self.rows += len(block)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._raw is not None and self._tmp is not None
        try:
            if exc_type is None:
                if self.rows != self.n_rows:
                    raise MolvaeError(
                        f"{self.path}: {self.rows:,} rows written of the {self.n_rows:,} its header announces"
                    )
            _commit(self._raw, self._tmp, self.path, ok=exc_type is None)
        finally:
            self._raw.close()
            self._tmp.unlink(missing_ok=True)
