"""Resource limits: bulk commands in bounded chunks (same output as one chunk), GPU out-of-memory retries."""

from __future__ import annotations

import gc
import gzip
import sys
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch

from molvae.batching import OUT_OF_MEMORY, iter_batches
from molvae.chemistry import canonicalize
from molvae.cli.main import main
from molvae.data import read_smiles
from molvae.errors import ConfigError, ResourceLimitError
from molvae.model import ModelConfig, MolVAE, SequenceVAE
from molvae.tokenizers import SPECIAL_TOKENS, Vocabulary
from tests.conftest import moses_smiles


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small untrained model whose vocabulary covers most MOSES molecules."""
    vocab = Vocabulary(
        [
            *SPECIAL_TOKENS,
            "C",
            "c",
            "N",
            "n",
            "O",
            "o",
            "S",
            "s",
            "F",
            "Cl",
            "Br",
            "(",
            ")",
            "=",
            "#",
            "1",
            "2",
            "3",
            "4",
            "[nH]",
            "-",
            "[C@H]",
            "[C@@H]",
            "[C@]",
            "[C@@]",
            "/",
            "\\",
        ]
    )
    torch.manual_seed(0)
    net = SequenceVAE(
        ModelConfig(
            vocab_size=len(vocab),
            embedding_dim=8,
            encoder_hidden=16,
            latent_dim=4,
            decoder_hidden=16,
            decoder_layers=1,
            max_length=60,
        )
    )
    d = tmp_path_factory.mktemp("limits") / "model"
    MolVAE(net, vocab, device="cpu").save(d)
    return d


@pytest.fixture(scope="module")
def molecules(tmp_path_factory):
    """53 records: MOSES molecules plus an invalid line, a blank line and an out-of-vocabulary molecule."""
    mols = moses_smiles(50)
    mols[10:10] = ["C1CC(", "", "C[Se]C"]
    f = tmp_path_factory.mktemp("limits-data") / "mols.smi"
    f.write_text("\n".join(mols) + "\n")
    return f


# --------------------------------------------------------------------------- chunked = unchunked
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".tsv", ".tsv.GZ", ".sdf", ".sdf.gz", ".parquet"])
def test_properties_chunked_output_equals_one_chunk(tmp_path, molecules, suffix) -> None:
    whole, chunked = tmp_path / f"whole{suffix}", tmp_path / f"chunked{suffix}"
    props = ["--properties", "mw,logp,qed", "--jobs", "1"]
    assert main(["properties", "--input", str(molecules), "--out", str(whole), *props]) == 0
    assert main(["properties", "--input", str(molecules), "--out", str(chunked), "--chunk-size", "7", *props]) == 0
    if suffix == ".parquet":
        a, b = pd.read_parquet(whole), pd.read_parquet(chunked)
        pd.testing.assert_frame_equal(a, b)
        assert len(a) == 53 and a["valid"].sum() == 51
    elif suffix.startswith(".sdf"):
        assert chunked.read_bytes() == whole.read_bytes()
        text = gzip.decompress(whole.read_bytes()).decode() if suffix.endswith(".gz") else whole.read_text()
        assert text.count("$$$$\n") == 53  # one record per row; invalid rows hold an empty molecule
        # Read back: the valid molecules, in place; the invalid and blank records as empty ones.
        back = read_smiles(whole)
        assert len(back) == 53 and back[10:12] == ["", ""] and back[12] == "C[Se]C"
        assert back[:10] == [canonicalize(s) for s in read_smiles(molecules)[:10]]
        assert "<qed>" in text and "<canonical_smiles>" in text
    else:
        assert chunked.read_bytes() == whole.read_bytes()
        text = gzip.decompress(whole.read_bytes()) if suffix.lower().endswith(".gz") else whole.read_bytes()
        assert text.decode().count("\n") == 54  # header + one row per record, blank and invalid ones included
        sep = "\t" if suffix.startswith(".tsv") else ","
        assert text.decode().splitlines()[0].split(sep)[:3] == ["smiles", "canonical_smiles", "valid"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_encode_chunked_output_equals_one_chunk(tmp_path, model_dir, molecules) -> None:
    # --batch-size 1: each code is computed alone, so the comparison is exact (a batched GRU's
    # output moves in the last bits with the batch it is in, which chunking changes).
    whole, chunked = tmp_path / "whole.npy", tmp_path / "chunked.npy"
    common = ["--model", str(model_dir), "--input", str(molecules), "--batch-size", "1"]
    assert main(["encode", *common, "--out", str(whole), "--index", str(tmp_path / "whole.csv")]) == 0
    assert (
        main(["encode", *common, "--out", str(chunked), "--chunk-size", "4", "--index", str(tmp_path / "c.csv")]) == 0
    )
    assert (tmp_path / "c.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    a, b = np.load(whole), np.load(chunked)
    assert a.shape == (53, 4)
    np.testing.assert_array_equal(a, b)  # NaN rows compare equal here
    assert np.isnan(a[10:13]).all() and np.isfinite(np.delete(a, [10, 11, 12], axis=0)).all()
    # With batching the numbers agree to float precision and the skipped rows exactly.
    assert (
        main(
            [
                "encode",
                "--model",
                str(model_dir),
                "--input",
                str(molecules),
                "--out",
                str(tmp_path / "b.npy"),
                "--chunk-size",
                "5",
            ]
        )
        == 0
    )
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), a, rtol=0, atol=1e-5)


def test_sample_and_reconstruct_chunked_output_equals_one_chunk(tmp_path, model_dir, molecules) -> None:
    for name, extra in (("whole", []), ("chunked", ["--chunk-size", "3"])):
        assert (
            main(
                [
                    "sample",
                    "--model",
                    str(model_dir),
                    "--n",
                    "40",
                    "--seed",
                    "3",
                    "--batch-size",
                    "16",
                    "--out",
                    str(tmp_path / f"s-{name}.csv"),
                    *extra,
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "reconstruct",
                    "--model",
                    str(model_dir),
                    "--input",
                    str(molecules),
                    "--out",
                    str(tmp_path / f"r-{name}.csv"),
                    *extra,
                ]
            )
            == 0
        )
    assert (tmp_path / "s-chunked.csv").read_bytes() == (tmp_path / "s-whole.csv").read_bytes()
    assert len(pd.read_csv(tmp_path / "s-whole.csv")) == 40
    # Greedy decoding of codes that agree to float precision: the same strings.
    assert (tmp_path / "r-chunked.csv").read_bytes() == (tmp_path / "r-whole.csv").read_bytes()


def test_failed_chunked_runs_leave_the_old_output_untouched(tmp_path, model_dir) -> None:
    f = tmp_path / "late-bad.smi"
    f.write_text("CCO\n" * 30 + "C1CC(\n")
    out, index = tmp_path / "z.npy", tmp_path / "z.csv"
    out.write_text("previous result\n")
    index.write_text("previous index\n")
    # Fails after several chunks were encoded and written to the temporary files.
    assert (
        main(
            [
                "encode",
                "--model",
                str(model_dir),
                "--input",
                str(f),
                "--out",
                str(out),
                "--chunk-size",
                "4",
                "--on-error",
                "raise",
                "--index",
                str(index),
            ]
        )
        == 2
    )
    assert out.read_text() == "previous result\n"
    assert index.read_text() == "previous index\n"
    f.write_bytes(b"CCO\n" * 30 + b"C\xffC\n")
    out = tmp_path / "p.csv"
    out.write_text("previous result\n")
    assert main(["properties", "--input", str(f), "--out", str(out), "--chunk-size", "4"]) == 2
    assert out.read_text() == "previous result\n"
    assert not list(tmp_path.glob(".*.tmp"))


def _encode_peak(model_dir, path, out) -> int:
    """Peak Python memory (tracemalloc) of `molvae encode` on ``path`` in chunks of 200."""
    gc.collect()
    tracemalloc.start()  # after a warm-up run, so module imports are not counted
    try:
        assert (
            main(["encode", "--model", str(model_dir), "--input", str(path), "--out", str(out), "--chunk-size", "200"])
            == 0
        )
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_encode_holds_one_chunk_of_molecules_in_memory(tmp_path, model_dir) -> None:
    """Python memory while encoding does not grow with the file, and stays below its strings' size."""
    warm = tmp_path / "warm.smi"
    warm.write_text("CCO\n")
    assert main(["encode", "--model", str(model_dir), "--input", str(warm), "--out", str(tmp_path / "w.npy")]) == 0
    mols = moses_smiles(20_000)
    small, big = tmp_path / "small.smi", tmp_path / "big.smi"
    small.write_text("\n".join(mols[:5_000]) + "\n")
    big.write_text("\n".join(mols) + "\n")
    strings = sum(sys.getsizeof(s) for s in mols) + sys.getsizeof(mols)
    del mols
    peak_small = _encode_peak(model_dir, small, tmp_path / "small.npy")
    peak_big = _encode_peak(model_dir, big, tmp_path / "big.npy")
    print(f"peak {peak_small:,} bytes for 5,000 molecules, {peak_big:,} for 20,000; their strings {strings:,}")
    # Four times the molecules, about the same peak: a fixed overhead (parser, model, one chunk),
    # nothing per molecule. Reading every string up front (as encode used to) alone peaks above `strings`.
    assert peak_big < 1.25 * peak_small, (peak_small, peak_big)
    assert peak_big < strings / 2, (peak_big, strings)
    assert np.load(tmp_path / "big.npy").shape == (20_000, 4)


# --------------------------------------------------------------------------- GPU out of memory
def _needs_at_most(limit: int, calls: list[int]):
    """A batch function that, like a GPU kernel, runs out of memory above ``limit`` items."""

    def fn(start: int, stop: int) -> list[int]:
        calls.append(stop - start)
        if stop - start > limit:
            raise OUT_OF_MEMORY(f"CUDA out of memory. Tried to allocate {stop - start} GiB. GPU 0 has 1 GiB free.")
        return list(range(start, stop))

    return fn


def test_out_of_memory_halves_the_batch_and_keeps_the_smaller_size() -> None:
    calls: list[int] = []
    out = [x for batch in iter_batches(_needs_at_most(5, calls), 50, 64, "decode") for x in batch]
    assert out == list(range(50))  # every item once, in order
    assert calls[:5] == [50, 25, 12, 6, 3]  # halved until it fits ...
    assert set(calls[5:]) <= {3, 2}  # ... then the working size is kept for the rest (2 at the tail)
    assert issubclass(OUT_OF_MEMORY, RuntimeError) and OUT_OF_MEMORY is getattr(
        torch, "OutOfMemoryError", OUT_OF_MEMORY
    )


def test_out_of_memory_at_batch_size_one_is_a_clear_error() -> None:
    calls: list[int] = []
    with pytest.raises(ResourceLimitError) as info:
        list(iter_batches(_needs_at_most(0, calls), 10, 8, "decode"))
    assert calls == [8, 4, 2, 1]
    message = str(info.value)
    assert message.startswith("decode: out of GPU memory even with batch size 1 (CUDA out of memory)")
    assert "--device cpu" in message and "\n" not in message
    assert isinstance(info.value.__cause__, OUT_OF_MEMORY)


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def fn(start: int, stop: int) -> None:
        calls.append(stop - start)
        raise RuntimeError("CUDA error: device-side assert triggered")

    with pytest.raises(RuntimeError, match="device-side assert"):
        list(iter_batches(fn, 10, 8))
    assert calls == [8]
    with pytest.raises(ConfigError, match="batch size must be a positive integer, got 0"):
        list(iter_batches(fn, 10, 0))


def test_model_batch_loops_give_the_same_result_at_any_batch_size(model_dir) -> None:
    # What a retry does to the model's loops: smaller batches, same greedy molecules and codes.
    model = MolVAE.load(model_dir, device="cpu")
    mols = moses_smiles(12)
    z1 = model.encode(mols, batch_size=1)
    np.testing.assert_allclose(model.encode(mols, batch_size=64), z1, rtol=0, atol=1e-5)
    assert model.decode(z1, batch_size=1) == model.decode(z1, batch_size=64)
