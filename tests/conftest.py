"""Shared fixtures: real MOSES molecules from the molsets wheel, small trained models."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from molvae.data import moses_file

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def moses_smiles(n: int, split: str = "train", offset: int = 0) -> list[str]:
    """The first ``n`` SMILES (after ``offset``) of a MOSES split."""
    out: list[str] = []
    with gzip.open(moses_file(split), "rt") as fh:
        next(fh)  # header
        for i, line in enumerate(fh):
            if i < offset:
                continue
            out.append(line.strip())
            if len(out) >= n:
                break
    return out


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own tokenized-data cache, never ~/.cache."""
    monkeypatch.setenv("MOLVAE_CACHE", str(tmp_path_factory.getbasetemp() / "molvae-cache"))


@pytest.fixture(scope="session")
def moses_train_1k() -> list[str]:
    return moses_smiles(1000)
