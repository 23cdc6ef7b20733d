"""`molvae decode`: latents (.npy) back to molecules, through the real CLI entry point."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from molvae.cli.decode import latent_rows, read_latents
from molvae.cli.main import main
from molvae.model import ModelConfig, MolVAE, SequenceVAE
from molvae.tokenizers import EOS_ID, SPECIAL_TOKENS, Vocabulary
from tests.conftest import moses_smiles


@pytest.fixture
def tiny_model(tmp_path):
    """A random-weight model biased towards short carbon chains: fast, and its sampled decodes
    vary, valid or not, which is all these tests need."""
    vocab = Vocabulary([*SPECIAL_TOKENS, "C", "O", "c", "1", "N", "(", ")", "="])
    torch.manual_seed(0)
    net = SequenceVAE(
        ModelConfig(
            vocab_size=len(vocab),
            embedding_dim=8,
            encoder_hidden=8,
            latent_dim=4,
            decoder_hidden=8,
            decoder_layers=1,
            max_length=20,
        )
    )
    with torch.no_grad():
        net.output.bias[vocab.index["C"]] = 2.0
        net.output.bias[EOS_ID] = 2.0
    MolVAE(net, vocab, device="cpu").save(tmp_path / "model")
    return str(tmp_path / "model")


@pytest.mark.slow
def test_decode_of_encode_is_reconstruct(small_model_dir, tmp_path, capsys) -> None:
    library = tmp_path / "library.smi"
    library.write_text("\n".join([*moses_smiles(30, split="test"), "C1CC"]) + "\n")
    model = str(small_model_dir)
    assert main(["encode", "--model", model, "--input", str(library), "--out", str(tmp_path / "z.npy")]) == 0
    assert main(["decode", "--model", model, "--input", str(tmp_path / "z.npy"), "--out", str(tmp_path / "d.csv")]) == 0
    assert main(["reconstruct", "--model", model, "--input", str(library), "--out", str(tmp_path / "r.csv")]) == 0
    decoded = pd.read_csv(tmp_path / "d.csv", keep_default_na=False)
    recon = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert list(decoded.columns) == ["smiles", "valid", "decoded", "generated"]
    # Greedy decoding of the posterior means is what reconstruct does.
    assert decoded["smiles"].tolist() == recon["reconstruction"].tolist()
    assert decoded["decoded"].tolist() == [True] * 30 + [False]
    assert "decoded 30 of 31 latents" in capsys.readouterr().out
    # Several attempts keep a valid molecule wherever one of them is valid.
    assert (
        main(
            [
                "decode",
                "--model",
                model,
                "--input",
                str(tmp_path / "z.npy"),
                "--out",
                str(tmp_path / "d10.csv"),
                "--attempts",
                "10",
            ]
        )
        == 0
    )
    best = pd.read_csv(tmp_path / "d10.csv", keep_default_na=False)
    assert best["valid"].sum() >= decoded["valid"].sum()


@pytest.mark.parametrize("options", [["--strategy", "sample"], ["--attempts", "3"]])
def test_sampled_decodes_do_not_depend_on_chunk_or_batch_size(tiny_model, tmp_path, options) -> None:
    """Each row's draws are keyed by its row number in the file (molvae.seeding)."""
    z = np.random.default_rng(0).normal(size=(11, 4)).astype(np.float32)
    z[4] = np.nan
    np.save(tmp_path / "z.npy", z)
    tables = []
    for chunk, batch in (("3", "2"), ("100", "2"), ("100", "64"), ("5", "3")):
        out = tmp_path / f"d{chunk}-{batch}.csv"
        assert (
            main(
                [
                    "decode",
                    "--model",
                    tiny_model,
                    "--input",
                    str(tmp_path / "z.npy"),
                    "--out",
                    str(out),
                    "--chunk-size",
                    chunk,
                    "--batch-size",
                    batch,
                    "--seed",
                    "5",
                    *options,
                ]
            )
            == 0
        )
        tables.append(pd.read_csv(out, keep_default_na=False))
    for table in tables[1:]:
        assert tables[0].equals(table)
    assert len(tables[0]) == 11 and tables[0]["decoded"].tolist() == [True] * 4 + [False] + [True] * 6
    # Varied decodes, or the comparison above would prove little.
    assert tables[0].loc[tables[0]["decoded"], "generated"].nunique() >= 3
    # The seed does matter.
    assert (
        main(
            [
                "decode",
                "--model",
                tiny_model,
                "--input",
                str(tmp_path / "z.npy"),
                "--out",
                str(tmp_path / "other.csv"),
                "--seed",
                "6",
                *options,
            ]
        )
        == 0
    )
    assert not pd.read_csv(tmp_path / "other.csv", keep_default_na=False).equals(tables[0])


@pytest.mark.parametrize(
    "make, options, needles",
    [
        (lambda p: np.save(p, np.zeros((3, 5), np.float32)), [], ["shape [3, 5], but the model's latents are [N, 4]"]),
        (
            lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
            [],
            ["not a NumPy array of numbers"],
        ),
        (lambda p: p.write_bytes(b"not numpy"), [], ["not a NumPy array of numbers"]),
        (lambda p: np.save(p, np.array(["CCO"])), [], ["holds <U3 values, not numbers"]),
        (lambda p: np.save(p, np.zeros((0, 4), np.float32)), [], ["no latents (0 rows)"]),
        (lambda p: None, [], ["z.npy: no such file"]),
        (
            lambda p: np.save(p, np.zeros((3, 4), np.float32)),
            ["--attempts", "5", "--strategy", "beam"],
            ["--attempts decodes greedily, then samples; it does not combine with --strategy beam"],
        ),
        (
            lambda p: np.save(p, np.zeros((3, 4), np.float32)),
            ["--temperature", "0"],
            ["--temperature must be a finite number > 0"],
        ),
        (
            lambda p: np.save(p, np.zeros((3, 4), np.float32)),
            ["--temperature", "inf"],
            ["--temperature must be a finite number > 0"],
        ),
        (lambda p: np.save(p, np.zeros((3, 4), np.float32)), ["--attempts", "0"], ["--attempts must be a positive"]),
    ],
)
def test_bad_latents_are_one_line_errors(tiny_model, tmp_path, capsys, make, options, needles) -> None:
    make(tmp_path / "z.npy")
    out = tmp_path / "d.csv"
    assert main(["decode", "--model", tiny_model, "--input", str(tmp_path / "z.npy"), "--out", str(out), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not out.exists()


def test_latents_must_be_npy(tiny_model, tmp_path, capsys) -> None:
    (tmp_path / "z.csv").write_text("0,0,0,0\n")
    assert (
        main(["decode", "--model", tiny_model, "--input", str(tmp_path / "z.csv"), "--out", str(tmp_path / "d.csv")])
        == 2
    )
    assert "decode reads a NumPy .npy array" in capsys.readouterr().err


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8", "<i2"])
def test_latent_rows_are_the_arrays_rows_as_float32(tmp_path, order, dtype) -> None:
    """Chunks read from the file (not the memory map) are the stored rows, for any byte order and layout."""
    stored = np.asfortranarray if order == "F" else np.ascontiguousarray
    array = stored((np.random.default_rng(0).normal(size=(1000, 8)) * 10).astype(dtype))
    np.save(tmp_path / "z.npy", array)
    z = read_latents(str(tmp_path / "z.npy"), 8)
    for start, stop in ((0, 1000), (3, 517), (990, 2000), (999, 1000)):
        rows = latent_rows(z, start, stop)
        assert rows.dtype == np.float32
        assert np.array_equal(rows, array[start:stop].astype(np.float32))
