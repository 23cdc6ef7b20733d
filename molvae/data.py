"""Molecule data under its former single name: :mod:`molvae.readers` and :mod:`molvae.datasets`.

:mod:`molvae.readers` reads molecule files (SMILES lists, tables, SD files, parquet;
the MOSES splits); :mod:`molvae.datasets` turns molecules into tokenized integer
arrays, caches them, splits and batches them. Every name this module had is
re-exported here, so ``from molvae.data import ...`` keeps working. The settings
(``CSV_FIELD_LIMIT``, ``PARALLEL_THRESHOLD``...) are read where they are defined:
change them in those modules, not here.
"""

from __future__ import annotations

from molvae.datasets import (
    CACHE_FORMAT_VERSION,
    DROP_REASONS,
    PARALLEL_THRESHOLD,
    DataSummary,
    TokenizedData,
    collate,
    default_cache_dir,
    length_bucketed_batches,
    load_dataset,
    prepare_molecules,
    remap_vocabulary,
    train_val_split,
)
from molvae.readers import (
    CSV_FIELD_LIMIT,
    FORMATS,
    MOSES_SPLITS,
    SD_KINDS,
    SMILES_COLUMN_NAMES,
    TABLE_KINDS,
    TEXT_KINDS,
    count_records,
    guess_suffix,
    is_smiles_list,
    iter_record_chunks,
    iter_records,
    iter_smiles,
    moses_file,
    read_smiles,
    record_fields,
    resolve_data_source,
    sample_smiles,
)

__all__ = [
    "CACHE_FORMAT_VERSION",
    "CSV_FIELD_LIMIT",
    "DROP_REASONS",
    "FORMATS",
    "MOSES_SPLITS",
    "PARALLEL_THRESHOLD",
    "SD_KINDS",
    "SMILES_COLUMN_NAMES",
    "TABLE_KINDS",
    "TEXT_KINDS",
    "DataSummary",
    "TokenizedData",
    "collate",
    "count_records",
    "default_cache_dir",
    "guess_suffix",
    "is_smiles_list",
    "iter_record_chunks",
    "iter_records",
    "iter_smiles",
    "length_bucketed_batches",
    "load_dataset",
    "moses_file",
    "prepare_molecules",
    "read_smiles",
    "record_fields",
    "remap_vocabulary",
    "resolve_data_source",
    "sample_smiles",
    "train_val_split",
]
