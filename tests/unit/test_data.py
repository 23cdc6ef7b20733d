from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem

from molvae.chemistry import canonicalize
from molvae.data import (
    DataSummary,
    collate,
    length_bucketed_batches,
    load_dataset,
    moses_file,
    prepare_molecules,
    read_smiles,
    remap_vocabulary,
    sample_smiles,
    train_val_split,
)
from molvae.datasets import _gather_index
from molvae.errors import ConfigError, DataError, InputFileError
from molvae.tokenizers import BOS_ID, EOS_ID, PAD_ID, SmilesTokenizer, Vocabulary
from tests.conftest import DATA_DIR


def test_moses_files_are_found_without_importing_moses() -> None:
    import sys

    for split in ("train", "test", "test_scaffolds"):
        assert moses_file(split).is_file()
    assert "moses" not in sys.modules
    with pytest.raises(DataError, match="unknown MOSES split"):
        moses_file("valid")


def test_read_smi_with_header_and_blank_lines(tmp_path) -> None:
    f = tmp_path / "a.smi"
    f.write_text("SMILES name\nCCO ethanol\n\nc1ccccc1\n")
    assert read_smiles(f) == ["CCO", "", "c1ccccc1"]


def test_read_csv_tsv_gz_parquet(tmp_path) -> None:
    df = pd.DataFrame({"id": [1, 2], "Smiles": ["CCO", "CCN"]})
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_csv(tmp_path / "a.tsv", sep="\t", index=False)
    with gzip.open(tmp_path / "a.csv.gz", "wt") as fh:
        df.to_csv(fh, index=False)
    df.to_parquet(tmp_path / "a.parquet", index=False)
    for name in ("a.csv", "a.tsv", "a.csv.gz", "a.parquet"):
        assert read_smiles(tmp_path / name) == ["CCO", "CCN"], name
    assert read_smiles(tmp_path / "a.csv", limit=1) == ["CCO"]


def test_missing_column_names_columns_found(tmp_path) -> None:
    f = tmp_path / "a.csv"
    pd.DataFrame({"id": [1], "structure": ["CCO"]}).to_csv(f, index=False)
    with pytest.raises(InputFileError, match="columns found: id, structure"):
        read_smiles(f)
    with pytest.raises(InputFileError, match="no column 'mol'"):
        read_smiles(f, column="mol")
    assert read_smiles(f, column="structure") == ["CCO"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.csv.gz", b"SMILES\nCCO\n", "not gzip"),
        ("latin.smi", b"CCO\n\xff\xfeC\n", "not UTF-8"),
        ("empty.csv", b"", "empty"),
        ("mol.mol2", b"x", "unsupported file type"),
        ("mol.sdf", b"x", "no SD record found"),
        ("mol.sdf.gz", b"x", "not gzip"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, name, content, message) -> None:
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(InputFileError, match=message):
        read_smiles(f)


def test_missing_file_and_directory(tmp_path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        read_smiles(tmp_path / "nope.smi")
    with pytest.raises(InputFileError, match="is a directory"):
        read_smiles(tmp_path)


def test_messy_file_counts_every_drop() -> None:
    lines = read_smiles(DATA_DIR / "messy.smi")
    data, summary = prepare_molecules(lines, max_tokens=120, source="messy.smi", n_jobs=1)
    assert summary.n_read == 9
    assert summary.n_kept == 4
    assert summary.dropped == {
        "empty": 2,
        "invalid": 2,
        "untokenizable": 0,
        "too_long": 1,
        "unknown_token": 0,
        "duplicate": 0,
    }
    assert data.smiles == ["CCO", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "CC[Xe]"]
    text = summary.format()
    assert "kept 4" in text and "dropped 2: empty line" in text and "dropped 1: longer than max tokens" in text


def test_given_vocabulary_drops_and_counts_unknown_tokens() -> None:
    vocab = Vocabulary.build(SmilesTokenizer().tokenize(s) for s in ["CCO", "c1ccccc1"])
    data, summary = prepare_molecules(["CCO", "CCN", "OCC"], vocab=vocab, n_jobs=1)
    assert data.smiles == ["CCO"]  # OCC canonicalizes to CCO: a repeat
    assert summary.dropped["unknown_token"] == 1 and summary.dropped["duplicate"] == 1


def test_repeated_molecules_are_dropped_counted_and_kept_out_of_validation(moses_train_1k) -> None:
    """Repeats, in another spelling too: kept once, so no molecule is on both sides of the split."""
    first = moses_train_1k[:150]
    respelled = [Chem.MolToSmiles(Chem.MolFromSmiles(s), doRandom=True, canonical=False) for s in first[:40]]
    lines = first + respelled + first[100:]
    data, summary = prepare_molecules(lines, n_jobs=1, source="repeats")
    assert data.smiles == [canonicalize(s) for s in first]
    assert summary.n_kept == 150 and summary.dropped["duplicate"] == 90
    assert "dropped 90: repeats an earlier molecule" in summary.format()
    train_idx, val_idx = train_val_split(len(data), 0.2, 0)
    assert not {data.smiles[i] for i in train_idx} & {data.smiles[i] for i in val_idx}


def test_parallel_preparation_equals_serial(moses_train_1k, monkeypatch) -> None:
    import molvae.datasets as datasets_module

    monkeypatch.setattr(datasets_module, "PARALLEL_THRESHOLD", 10)
    serial, s1 = prepare_molecules(moses_train_1k[:300], n_jobs=1)
    parallel, s2 = prepare_molecules(moses_train_1k[:300], n_jobs=2)
    assert serial.smiles == parallel.smiles
    assert np.array_equal(serial.ids, parallel.ids) and serial.vocab == parallel.vocab
    assert s1.to_dict() == s2.to_dict()


def test_tokenized_arrays_decode_to_canonical_smiles(moses_train_1k) -> None:
    data, _ = prepare_molecules(moses_train_1k[:200], n_jobs=1)
    tok = SmilesTokenizer()
    for i in range(len(data)):
        assert tok.detokenize(data.tokens(i)) == data.smiles[i]


def test_gather_index() -> None:
    starts = np.array([5, 0, 9, 3])
    lengths = np.array([2, 0, 3, 1])
    assert _gather_index(starts, lengths).tolist() == [5, 6, 9, 10, 11, 3]


def test_subset_and_collate(moses_train_1k) -> None:
    data, _ = prepare_molecules(moses_train_1k[:50], n_jobs=1)
    idx = np.array([7, 3, 42])
    sub = data.subset(idx)
    assert sub.smiles == [data.smiles[i] for i in idx]
    for j, i in enumerate(idx):
        assert sub.tokens(j) == data.tokens(i)
    seq, lengths = collate(data, idx)
    assert seq.shape == (3, int(data.lengths[idx].max()) + 2)
    for row, i in enumerate(idx):
        n = data.lengths[i]
        assert seq[row, 0] == BOS_ID and seq[row, n + 1] == EOS_ID
        assert seq[row, 1 : n + 1].tolist() == data.ids[data.offsets[i] : data.offsets[i + 1]].tolist()
        assert (seq[row, n + 2 :] == PAD_ID).all()
        assert lengths[row] == n + 2


def test_length_bucketing_is_deterministic_and_complete() -> None:
    lengths = np.random.default_rng(0).integers(5, 60, size=1000)
    a = length_bucketed_batches(lengths, 32, seed=1, epoch=0, bucket_batches=4)
    b = length_bucketed_batches(lengths, 32, seed=1, epoch=0, bucket_batches=4)
    c = length_bucketed_batches(lengths, 32, seed=1, epoch=1, bucket_batches=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert sorted(np.concatenate(a).tolist()) == list(range(1000))
    # Bucketing keeps padding low: within-batch length spread is far below that of unsorted batches.
    spread = np.mean([lengths[x].max() - lengths[x].min() for x in a])
    unsorted = np.mean([np.ptp(lengths[i : i + 32]) for i in range(0, 1000, 32)])
    assert spread < 0.4 * unsorted


def test_split_is_deterministic_and_disjoint() -> None:
    t1, v1 = train_val_split(1000, 0.1, seed=3)
    t2, v2 = train_val_split(1000, 0.1, seed=3)
    _, v3 = train_val_split(1000, 0.1, seed=4)
    assert np.array_equal(t1, t2) and np.array_equal(v1, v2)
    assert len(v1) == 100 and not set(t1) & set(v1) and len(t1) + len(v1) == 1000
    assert not np.array_equal(v1, v3)
    with pytest.raises(DataError):
        train_val_split(10, 1.5, 0)


def test_load_dataset_caches_integer_arrays(tmp_path, moses_train_1k) -> None:
    f = tmp_path / "mols.smi"
    f.write_text("\n".join(moses_train_1k[:100]) + "\nnot_a_smiles\n")
    cache = tmp_path / "cache"
    first, s1 = load_dataset(str(f), cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    second, s2 = load_dataset(str(f), cache_dir=cache)
    assert second.smiles == first.smiles and np.array_equal(second.ids, first.ids)
    assert s2.to_dict() == s1.to_dict() and s1.dropped["invalid"] == 1


def test_remap_vocabulary(moses_train_1k) -> None:
    data, _ = prepare_molecules(moses_train_1k[:100], n_jobs=1)
    small = Vocabulary([*data.vocab.tokens[:4], *sorted(data.vocab.tokens[4:12])])
    remapped, dropped = remap_vocabulary(data, small)
    assert dropped == len(data) - len(remapped) > 0
    for i in range(len(remapped)):
        assert "".join(remapped.tokens(i)) == remapped.smiles[i]


def test_empty_result_is_an_error(tmp_path) -> None:
    f = tmp_path / "junk.smi"
    f.write_text("xyz\nqqq\n")
    with pytest.raises(DataError, match="no usable molecules"):
        load_dataset(str(f), cache_dir=tmp_path / "c")


def test_summary_format_lists_reasons() -> None:
    s = DataSummary("x", n_read=3, n_kept=1, dropped={"invalid": 2})
    assert "dropped 2: invalid SMILES" in s.format()


def test_sample_smiles_is_uniform_seeded_and_bounded(tmp_path) -> None:
    path = tmp_path / "ordered.smi"
    path.write_text("".join(f"C{i}\n" for i in range(10_000)))  # records, not parsed: the index is the name
    picks = []
    for seed in range(200):
        sample = sample_smiles(path, 100, seed=seed)
        assert len(sample) == len(set(sample)) == 100
        picks += [int(s[1:]) for s in sample]
    picks = np.array(picks)
    # 20,000 picks: each tenth of the file holds 2,000 +- 45 of them if sampling is uniform;
    # taking the first lines would put them all in the first tenth
    counts = np.bincount(picks // 1000, minlength=10)
    assert np.all(np.abs(counts - 2000) < 250), counts
    assert abs(picks.mean() - 4999.5) < 100
    assert sample_smiles(path, 100, seed=3) == sample_smiles(path, 100, seed=3)
    assert sample_smiles(path, 100, seed=3) != sample_smiles(path, 100, seed=4)
    assert sorted(sample_smiles(path, 20_000)) == sorted(f"C{i}" for i in range(10_000))
    assert sample_smiles(path, 0) == []
    with pytest.raises(ConfigError, match="non-negative"):
        sample_smiles(path, -1)


def test_moses_is_ordered_so_samples_must_be_random() -> None:
    # The reason sample_smiles exists: MOSES keeps ZINC's order, so its first lines are
    # a cluster of similar molecules, not a sample (MW per 1,000-line block ranges 267-324).
    from molvae.chemistry import murcko_scaffolds
    from molvae.data import moses_file, read_smiles

    path = moses_file("train")
    head = read_smiles(path, column="SMILES", limit=2000)
    rand = sample_smiles(path, 2000, seed=0, column="SMILES")
    assert len(set(murcko_scaffolds(rand))) > len(set(murcko_scaffolds(head)))


def test_iter_records_keeps_columns_of_every_format(tmp_path) -> None:
    from molvae.data import count_records, iter_record_chunks, iter_records

    rows = [("CCO", "A1", "1.5"), ("", "A2", "2.0"), ("c1ccccc1", "A3", "")]
    (tmp_path / "m.csv").write_text("id,smiles,act\n" + "".join(f"{i},{s},{a}\n" for s, i, a in rows))
    with gzip.open(tmp_path / "m.tsv.gz", "wt") as fh:
        fh.write("smiles\tid\tact\n" + "".join(f"{s}\t{i}\t{a}\n" for s, i, a in rows))
    pd.DataFrame({"smiles": [r[0] for r in rows], "id": [1, 2, 3], "act": [1.5, 2.0, None]}).to_parquet(
        tmp_path / "m.parquet"
    )
    for name in ("m.csv", "m.tsv.gz"):
        assert list(iter_records(tmp_path / name, keep=["act", "id"])) == [(s, (a, i)) for s, i, a in rows]
    assert list(iter_records(tmp_path / "m.parquet", keep=["id", "act"])) == [
        ("CCO", (1, 1.5)),
        ("", (2, 2.0)),
        ("c1ccccc1", (3, None)),
    ]
    # The SMILES column can be kept as well (the raw text, before any canonicalization).
    assert [v for _, v in iter_records(tmp_path / "m.parquet", keep=["smiles"])] == [("CCO",), ("",), ("c1ccccc1",)]
    chunks = list(iter_record_chunks(tmp_path / "m.csv", 2, keep=["id"]))
    assert chunks == [(["CCO", ""], {"id": ["A1", "A2"]}), (["c1ccccc1"], {"id": ["A3"]})]
    assert count_records(tmp_path / "m.csv", keep=["id"]) == 3
    with pytest.raises(InputFileError, match=r"no column 'ID', 'x' to keep; columns found: smiles, id, act"):
        count_records(tmp_path / "m.parquet", keep=["ID", "x"])


def test_smi_name_field(tmp_path) -> None:
    from molvae.data import iter_records

    (tmp_path / "m.smi").write_text("SMILES Name\nCCO ethanol\n\nCCN  ethyl amine \nC\n")
    assert list(iter_records(tmp_path / "m.smi", keep=["name"])) == [
        ("CCO", ("ethanol",)),
        ("", ("",)),
        ("CCN", ("ethyl amine",)),
        ("C", ("",)),
    ]
    assert list(iter_records(tmp_path / "m.smi")) == [("CCO", ()), ("", ()), ("CCN", ()), ("C", ())]
    with pytest.raises(InputFileError, match="has no columns; the one field that can be kept is 'name'"):
        list(iter_records(tmp_path / "m.smi", keep=["id"]))


def _write_sd(path, smiles: list[str], fields: dict[int, dict[str, str]] | None = None) -> None:
    from rdkit import Chem

    opener = gzip.open(path, "wt") if str(path).endswith(".gz") else open(path, "w")
    with opener as fh:
        writer = Chem.SDWriter(fh)
        for i, smi in enumerate(smiles):
            mol = Chem.MolFromSmiles(smi)
            mol.SetProp("_Name", f"mol-{i}")
            for key, value in (fields or {}).get(i, {}).items():
                mol.SetProp(key, value)
            writer.write(mol)
        writer.close()


@pytest.mark.parametrize("name", ["lib.sdf", "lib.sdf.gz"])
def test_sd_file_records_are_its_molecules(tmp_path, name) -> None:
    from molvae.chemistry import canonicalize
    from molvae.data import iter_records
    from tests.conftest import moses_smiles

    mols = moses_smiles(50, split="test") + ["C[C@H](N)C(=O)O", "F/C=C/F"]  # stereo must survive the mol block
    _write_sd(tmp_path / name, mols, {0: {"pIC50": "6.10"}, 3: {"pIC50": "7"}})
    assert [canonicalize(s) for s in read_smiles(tmp_path / name)] == [canonicalize(s) for s in mols]
    records = list(iter_records(tmp_path / name, keep=["name", "pIC50"]))
    assert [v for _, v in records[:4]] == [("mol-0", "6.10"), ("mol-1", ""), ("mol-2", ""), ("mol-3", "7")]


def test_sd_file_problems(tmp_path) -> None:
    from molvae.data import count_records, iter_records

    path = tmp_path / "lib.sdf"
    _write_sd(path, ["CCO", "c1ccccc1O", "CCN"])
    blocks = path.read_text().split("$$$$\n")
    blocks[1] = blocks[1].replace("  7  7  0", "  9  7  0", 1)  # atom count beyond the atom block
    (tmp_path / "bad.sdf").write_text("$$$$\n".join(blocks))
    # The unreadable record stays in place, as a string no SMILES parser accepts.
    assert read_smiles(tmp_path / "bad.sdf") == ["CCO", "<SD record 2: not read>", "CCN"]
    assert count_records(tmp_path / "bad.sdf") == 3
    (tmp_path / "not.sdf").write_text("CCO\nCCN\n")
    with pytest.raises(InputFileError, match="none of its 1 records could be read as a molecule; is it an SD file"):
        read_smiles(tmp_path / "not.sdf")
    with pytest.raises(InputFileError, match=r"no record has the data field 'ID' to keep; data fields found: none"):
        list(iter_records(path, keep=["name", "ID"]))
    with pytest.raises(InputFileError, match="an SD file holds molecules, not a SMILES column"):
        read_smiles(path, column="smiles")
    (tmp_path / "fake.sdf.gz").write_text("not gzip")
    with pytest.raises(InputFileError, match="not gzip-compressed"):
        read_smiles(tmp_path / "fake.sdf.gz")
    packed = gzip.compress(path.read_bytes() * 50)
    (tmp_path / "cut.sdf.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(InputFileError, match=r"cut.sdf.gz: cannot read \(EOFError"):
        read_smiles(tmp_path / "cut.sdf.gz")
    # Training data: the unreadable record is one more invalid molecule, counted with the others.
    _, summary = load_dataset(str(tmp_path / "bad.sdf"))
    assert (summary.n_read, summary.n_kept, summary.dropped.get("invalid")) == (3, 2, 1)


def test_record_fields_of_each_format(tmp_path) -> None:
    from molvae.data import record_fields

    (tmp_path / "m.csv").write_text("id,smiles,score\nA,CCO,1\n")
    with gzip.open(tmp_path / "m.tsv.gz", "wt") as fh:
        fh.write("smiles\tqed\nCCO\t0.4\n")
    pd.DataFrame({"smiles": ["CCO"], "esol": [0.1]}).to_parquet(tmp_path / "m.parquet")
    (tmp_path / "m.smi").write_text("CCO ethanol\n")
    _write_sd(tmp_path / "m.sdf", ["CCO", "CCN", "CCC"], {1: {"dock": "-7.1"}, 2: {"vendor": "V2", "dock": "-6"}})
    assert record_fields(tmp_path / "m.csv") == ["id", "smiles", "score"]
    assert record_fields(tmp_path / "m.tsv.gz") == ["smiles", "qed"]
    assert record_fields(tmp_path / "m.parquet") == ["smiles", "esol"]
    assert record_fields(tmp_path / "m.smi") == ["name"]
    assert record_fields(tmp_path / "m.sdf") == ["name", "dock", "vendor"]
    with pytest.raises(InputFileError, match="no such file"):
        record_fields(tmp_path / "missing.csv")


@pytest.mark.parametrize("name", ["m.csv", "m.tsv", "m.sdf", "m.csv.gz", "m.sdf.gz", "m.parquet"])
def test_guess_suffix_names_each_format_molvae_writes(tmp_path, moses_train_1k, name) -> None:
    """Standard input has no name: its format is told from its first bytes, and reading it so
    gives the molecules a named file gives."""
    from molvae.data import guess_suffix, iter_smiles
    from molvae.tables import TableWriter

    molecules = moses_train_1k[:40]
    with TableWriter(tmp_path / name) as out:
        out.write(pd.DataFrame({"name": [f"m{i}" for i in range(40)], "smiles": molecules}))
    head = (tmp_path / name).read_bytes()[:65_536]
    suffix = guess_suffix(head)
    assert suffix == name[1:], suffix
    unnamed = tmp_path / f"stdin{suffix}"
    unnamed.write_bytes((tmp_path / name).read_bytes())
    read = list(iter_smiles(unnamed))
    assert len(read) == 40 and read == list(iter_smiles(tmp_path / name))


@pytest.mark.parametrize(
    "text, column, suffix",
    [
        ("CCO\nc1ccccc1 benzene\n", None, ".smi"),  # SMILES lines, with and without names
        ("C(C)(C)O,x\n", None, ".smi"),  # a comma alone does not make a table
        ("smiles\nCCO\n", None, ".csv"),  # one column under a SMILES header (`cut -d, -f1`)
        ('"id","SMILES"\n1,CCO\n', None, ".csv"),
        ("Canonical_SMILES\tid\nCCO\t1\n", None, ".tsv"),
        ("ID,Structure\nx,CCO\n", "Structure", ".csv"),
        ("ID\tStructure\nx\tCCO\n", "structure", ".tsv"),  # a named column means a table; its reader checks the name
        ("", None, ".smi"),
    ],
)
def test_guess_suffix_of_text(text, column, suffix) -> None:
    from molvae.data import guess_suffix

    assert guess_suffix(text.encode(), column) == suffix
    assert guess_suffix(gzip.compress(text.encode()), column) == suffix + ".gz"


@pytest.mark.parametrize("name", ["bad.smi.gz", "bad.csv.gz", "bad.sdf.gz"])
def test_a_corrupt_gzip_file_is_a_clear_error(tmp_path, name) -> None:
    """A gzip header over damaged data fails inside zlib, not gzip: still one named error."""
    from molvae.data import count_records, record_fields

    packed = bytearray(gzip.compress(b"smiles\n" + b"CCO\nc1ccccc1O\n" * 2000))
    packed[20:40] = b"\xff" * 20  # damage the deflate stream, keep the header
    (tmp_path / name).write_bytes(bytes(packed))
    for read in (read_smiles, count_records, record_fields):
        with pytest.raises(InputFileError, match=rf"{name}: cannot read \(error: "):
            read(tmp_path / name)
