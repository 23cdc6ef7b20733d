"""The core commands end to end: train, sample, encode, reconstruct."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem

from molvae.cli.main import main
from tests.conftest import DATA_DIR, moses_smiles

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smiles_run(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("cli") / "zinc-smiles"
    assert (
        main(["train", "--data", "moses", "--limit", "2000", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    )
    return str(out)


def test_train_moses_then_sample(smiles_run, tmp_path, capsys) -> None:
    out = tmp_path / "samples.csv"
    assert main(["sample", "--model", smiles_run, "--n", "100", "--out", str(out), "--seed", "0"]) == 0
    df = pd.read_csv(out, keep_default_na=False)
    assert len(df) == 100
    assert {"smiles", "valid"} <= set(df.columns)
    for smi, valid in zip(df["smiles"], df["valid"]):
        assert valid == (smi != "" and Chem.MolFromSmiles(smi) is not None)
    assert "validity" in capsys.readouterr().out


def test_sample_with_a_seed_is_the_same_whatever_the_sizes(smiles_run, tmp_path) -> None:
    """--n 30 starts with --n 12's molecules, with other --batch-size and --chunk-size."""
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    assert (
        main(["sample", "--model", smiles_run, "--n", "12", "--seed", "4", "--batch-size", "5", "-o", str(small)]) == 0
    )
    assert main(["sample", "--model", smiles_run, "--n", "30", "--seed", "4", "--chunk-size", "7", "-o", str(big)]) == 0
    first = pd.read_csv(small, keep_default_na=False)
    whole = pd.read_csv(big, keep_default_na=False)
    assert first.equals(whole.head(12))
    assert whole["generated"].nunique() > 20


def test_encode_sample_is_seeded_by_row(smiles_run, tmp_path) -> None:
    """`encode --sample --seed S` draws each row's noise by its row number: chunking changes nothing."""
    library = tmp_path / "lib.smi"
    library.write_text("\n".join(moses_smiles(9, split="test")) + "\nC1CC\n")
    arrays = []
    for seed, chunk in (("3", "4"), ("3", "100"), ("4", "100")):
        out = tmp_path / f"z{seed}-{chunk}.npy"
        assert (
            main(
                [
                    "encode",
                    "--model",
                    smiles_run,
                    "-i",
                    str(library),
                    "-o",
                    str(out),
                    "--sample",
                    "--seed",
                    seed,
                    "--chunk-size",
                    chunk,
                    "--batch-size",
                    "3",
                ]
            )
            == 0
        )
        arrays.append(np.load(out))
    # Equal up to the encoder's float rounding, which follows the batches' make-up.
    assert np.allclose(arrays[0], arrays[1], atol=1e-5, equal_nan=True) and np.isnan(arrays[0][9]).all()
    assert not np.allclose(arrays[0][:9], arrays[2][:9], atol=1e-2)
    assert main(["encode", "--model", smiles_run, "-i", str(library), "-o", str(tmp_path / "mean.npy")]) == 0
    assert not np.allclose(np.load(tmp_path / "mean.npy")[:9], arrays[0][:9])


def test_selfies_samples_always_parse(tmp_path, capsys) -> None:
    run = tmp_path / "zinc-selfies"
    args = [
        "train",
        "--data",
        "moses",
        "--limit",
        "2000",
        "--epochs",
        "1",
        "--representation",
        "selfies",
        "--out",
        str(run),
        "--no-progress",
    ]
    assert main(args) == 0
    from molvae.model import MolVAE

    model = MolVAE.load(run)
    summary = (
        f"trained a SELFIES VAE ({len(model.vocab)} tokens, latent {model.config.latent_dim}, "
        f"{model.n_parameters / 1e6:.2f}M parameters) -> {run}"
    )
    assert summary in capsys.readouterr().out.splitlines()
    out = tmp_path / "samples.csv"
    assert main(["sample", "--model", str(run), "--n", "100", "--out", str(out), "--seed", "1"]) == 0
    df = pd.read_csv(out, keep_default_na=False)
    non_empty = df[df["generated"] != ""]
    assert len(non_empty) > 0
    assert all(Chem.MolFromSmiles(s) is not None for s in non_empty["generated"])
    assert non_empty["valid"].all()


def test_messy_file_reports_drops(tmp_path, capsys) -> None:
    run = tmp_path / "messy"
    args = [
        "train",
        "--data",
        str(DATA_DIR / "messy.smi"),
        "--epochs",
        "1",
        "--out",
        str(run),
        "--no-progress",
        "--val-fraction",
        "0",
        "--latent-dim",
        "8",
        "--decoder-hidden",
        "32",
        "--decoder-layers",
        "1",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "read 9 records, kept 4, dropped 5" in out
    assert "dropped 2: empty line" in out
    assert "dropped 2: invalid SMILES" in out
    assert "dropped 1: longer than max tokens" in out


def test_encode_and_reconstruct(smiles_run, tmp_path, capsys) -> None:
    library = tmp_path / "library.smi"
    mols = moses_smiles(20, split="test")
    library.write_text("\n".join([*mols, "C1CC", "CC[Xe]"]) + "\n")
    latents = tmp_path / "z.npy"
    assert main(["encode", "--model", smiles_run, "--input", str(library), "--out", str(latents)]) == 0
    z = np.load(latents)
    assert z.shape == (22, 128)
    assert not np.isnan(z[:20]).any() and np.isnan(z[20:]).all()
    assert "skipped 2" in capsys.readouterr().out

    recon = tmp_path / "recon.csv"
    assert main(["reconstruct", "--model", smiles_run, "--input", str(library), "--out", str(recon)]) == 0
    df = pd.read_csv(recon, keep_default_na=False)
    assert list(df.columns[:3]) == ["smiles", "reconstruction", "exact"]
    assert df["smiles"][0] == Chem.MolToSmiles(Chem.MolFromSmiles(mols[0]))
    assert not df["exact"][20:].any() and not df["encoded"][20:].any()
    for s, r, e in zip(df["smiles"], df["reconstruction"], df["exact"]):
        assert e == (s == r)


def test_reconstruct_keeps_id_columns(small_model_dir, tmp_path) -> None:
    mols = moses_smiles(5, split="test")
    library = tmp_path / "library.tsv"
    library.write_text(
        "id\tsmiles\tseries\n" + "".join(f"M{i}\t{m}\tS{i % 2}\n" for i, m in enumerate(mols)) + "M5\tCC[Xe]\tS1\n"
    )
    recon = tmp_path / "recon.csv"
    assert (
        main(
            [
                "reconstruct",
                "--model",
                str(small_model_dir),
                "--input",
                str(library),
                "--out",
                str(recon),
                "--keep-columns",
                "id,series",
                "--chunk-size",
                "4",
            ]
        )
        == 0
    )
    df = pd.read_csv(recon, keep_default_na=False)
    assert list(df.columns) == ["id", "series", "smiles", "reconstruction", "exact", "encoded"]
    assert df["id"].tolist() == [f"M{i}" for i in range(6)]
    assert df["series"].tolist() == ["S0", "S1", "S0", "S1", "S0", "S1"]
    assert df["encoded"].tolist() == [True] * 5 + [False]


def test_encode_index_carries_ids_and_reasons(small_model_dir, tmp_path, capsys) -> None:
    mols = moses_smiles(5, split="test")
    library = tmp_path / "library.tsv"
    rows = [*mols[:2], "C1CC", *mols[2:], "CC[Xe]"]
    library.write_text("id\tsmiles\tpIC50\n" + "".join(f"M{i}\t{m}\t{i / 2}\n" for i, m in enumerate(rows)))
    latents, index = tmp_path / "z.npy", tmp_path / "z_index.csv"
    # --chunk-size 3 puts chunk boundaries inside the file: row numbers must run on across them.
    assert (
        main(
            [
                "encode",
                "--model",
                str(small_model_dir),
                "--input",
                str(library),
                "--out",
                str(latents),
                "--index",
                str(index),
                "--keep-columns",
                "id,pIC50",
                "--chunk-size",
                "3",
            ]
        )
        == 0
    )
    assert str(index) in capsys.readouterr().out
    z = np.load(latents)
    df = pd.read_csv(index, keep_default_na=False)
    assert list(df.columns) == ["id", "pIC50", "row", "smiles", "encoded", "error"]
    assert df["id"].tolist() == [f"M{i}" for i in range(7)]
    assert df["pIC50"].tolist() == [i / 2 for i in range(7)]
    assert df["row"].tolist() == list(range(7))
    assert df["smiles"].tolist() == rows
    assert df["encoded"].tolist() == [True, True, False, True, True, True, False]
    assert (df["encoded"] == ~np.isnan(z).any(axis=1)).all()
    assert "C1CC" in df["error"][2] and "invalid SMILES" in df["error"][2]
    assert "Xe" in df["error"][6]
    assert (df["error"][df["encoded"]] == "").all()


def test_encode_index_option_errors(small_model_dir, tmp_path, capsys) -> None:
    library = tmp_path / "library.smi"
    library.write_text("CCO first\n")
    base = ["encode", "--model", str(small_model_dir), "--input", str(library), "--out", str(tmp_path / "z.npy")]
    for extra, message in [
        (["--keep-columns", "name"], "--keep-columns needs --index"),
        (["--index", str(tmp_path / "z.npy")], "cannot write an output table as .npy"),
        (["--index", str(tmp_path / "i.csv"), "--keep-columns", "smiles"], "already has a column"),
        (["--index", str(tmp_path / "i.csv"), "--keep-columns", "id"], "id"),
    ]:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (extra, err)
    assert not (tmp_path / "z.npy").exists() and not (tmp_path / "i.csv").exists()
    # .smi input: 'name' is the text after the SMILES.
    assert main(base + ["--index", str(tmp_path / "i.csv"), "--keep-columns", "name"]) == 0
    assert pd.read_csv(tmp_path / "i.csv")["name"].tolist() == ["first"]


def test_encode_on_error_raise_names_record(smiles_run, tmp_path, capsys) -> None:
    library = tmp_path / "library.smi"
    library.write_text("CCO\nC1CC\n")
    code = main(
        [
            "encode",
            "--model",
            smiles_run,
            "--input",
            str(library),
            "--out",
            str(tmp_path / "z.npy"),
            "--on-error",
            "raise",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "record 2" in err and "C1CC" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "z.npy").exists()


@pytest.mark.parametrize("command", ["sample", "encode", "reconstruct", "decode"])
def test_missing_model_is_one_line_error(command, tmp_path, capsys) -> None:
    out = tmp_path / ("o.npy" if command == "encode" else "o.csv")
    args = [command, "--model", str(tmp_path / "nope"), "--out", str(out)]
    if command == "decode":
        np.save(tmp_path / "in.npy", np.zeros((2, 128), np.float32))
        args += ["--input", str(tmp_path / "in.npy")]
    elif command != "sample":
        (tmp_path / "in.smi").write_text("CCO\n")
        args += ["--input", str(tmp_path / "in.smi")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "model directory not found" in err and len(err.splitlines()) == 1


def test_a_closed_pipe_ends_the_command_quietly(tmp_path) -> None:
    """`molvae ... | head -1`: no 'Broken pipe' error once the reader has gone, and the files are written."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "molvae.cli.main",
            "properties",
            "--input",
            str(DATA_DIR / "messy.smi"),
            "--out",
            str(tmp_path / "p.csv"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the command prints anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Broken pipe" not in err and "Traceback" not in err
    assert (tmp_path / "p.csv").stat().st_size > 0


def test_reconstruct_exact_compares_what_the_model_can_spell() -> None:
    """A model without stereo tokens decodes the 2D graph of a stereo input: that counts as exact."""
    from molvae.cli.reconstruct import _rows

    inputs = ["C[C@H](N)C(=O)O", "C[C@H](N)C(=O)O", "CCO"]
    decoded = ["CC(N)C(=O)O", "CC(N)C(=O)OC", None]
    flat = _rows(inputs, decoded, stereo=False)
    assert flat["exact"].tolist() == [True, False, False]
    assert flat["encoded"].tolist() == [True, True, False]
    # A stereo-aware model must decode the stereocentre to be exact.
    assert _rows(inputs, decoded, stereo=True)["exact"].tolist() == [False, False, False]
    assert _rows(["C[C@H](N)C(=O)O"], ["C[C@H](N)C(=O)O"], stereo=True)["exact"].tolist() == [True]


@pytest.mark.parametrize(
    "command",
    [
        ["sample", "--n", "30", "--seed", "3", "--chunk-size", "7"],
        ["properties", "--input", str(DATA_DIR / "messy.smi"), "--properties", "mw,qed"],
        ["reconstruct", "--input", str(DATA_DIR / "messy.smi")],
        ["decode", "--input", "{z}", "--attempts", "2"],
    ],
    ids=lambda c: c[0],
)
def test_out_dash_writes_the_same_table_to_standard_output(small_model_dir, tmp_path, capsys, command) -> None:
    """`-o -` streams the CSV a file would hold, for pipes; the summary line goes to stderr, out of the table's way."""
    z = tmp_path / "z.npy"
    np.save(z, np.random.default_rng(0).standard_normal((5, 32)).astype(np.float32))
    args = [a.replace("{z}", str(z)) for a in command]
    if command[0] != "properties":
        args += ["--model", str(small_model_dir)]
    assert main([*args, "--out", str(tmp_path / "t.csv")]) == 0
    capsys.readouterr()
    assert main([*args, "--out", "-"]) == 0
    captured = capsys.readouterr()
    assert captured.out == (tmp_path / "t.csv").read_text()
    assert "standard output" in captured.err and "standard output" not in captured.out
    assert not (tmp_path / "-").exists()


def test_out_dash_is_refused_where_no_table_is_written(small_model_dir, tmp_path, capsys) -> None:
    smi = tmp_path / "a.smi"
    smi.write_text("CCO\n")
    assert main(["encode", "--model", str(small_model_dir), "-i", str(smi), "-o", "-"]) == 2
    assert "name the output .npy" in capsys.readouterr().err
    assert (
        main(["encode", "--model", str(small_model_dir), "-i", str(smi), "-o", str(tmp_path / "z.npy"), "--index", "-"])
        == 2
    )
    assert "cannot write an output table without a suffix" in capsys.readouterr().err
