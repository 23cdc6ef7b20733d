"""``molvae interpolate`` and ``molvae explore`` end to end, and their one-line errors."""

from __future__ import annotations

import pandas as pd
import pytest

from molvae.chemistry import canonicalize
from molvae.cli.main import main

START = "CC(=O)Nc1ccc(NC(=O)c2ccccc2)cc1"
END = "O=C(c1ccccc1)N1CCCCC1"


def _one_line_error(capsys, code: int) -> str:
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# Inputs are checked before the model loads, so these need no trained model.
@pytest.mark.parametrize("command", [["interpolate", "asprin", "ibuprofen"], ["explore", "asprin"]])
def test_unknown_drug_suggests(command, tmp_path, capsys) -> None:
    code = main([*command, "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "o")])
    line = _one_line_error(capsys, code)
    assert "unknown drug name 'asprin'" in line and "aspirin" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", [["interpolate", "CCO", "C1CC(=O"], ["explore", "C1CC(=O"]])
def test_invalid_smiles(command, tmp_path, capsys) -> None:
    code = main([*command, "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "o")])
    line = _one_line_error(capsys, code)
    assert "C1CC(=O" in line and "valid SMILES" in line


def test_bad_steps(tmp_path, capsys) -> None:
    code = main(["interpolate", "CCO", "CCN", "--model", str(tmp_path), "--out", str(tmp_path / "o"), "--steps", "1"])
    assert "--steps" in _one_line_error(capsys, code)
    code = main(
        [
            "interpolate",
            "CCO",
            "CCN",
            "--model",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--endpoints",
            "fit",
            "--fit-steps",
            "0",
        ]
    )
    assert "--fit-steps" in _one_line_error(capsys, code)


@pytest.mark.slow
@pytest.mark.parametrize("command", [["interpolate", "C[Se]C", "aspirin"], ["explore", "C[Xe]C"]])
def test_token_outside_vocabulary(command, small_model_dir, tmp_path, capsys) -> None:
    code = main([*command, "--model", str(small_model_dir), "--out", str(tmp_path / "o")])
    line = _one_line_error(capsys, code)
    assert "unknown token" in line and ("[Se]" in line or "[Xe]" in line)


@pytest.mark.slow
def test_interpolate_two_smiles(small_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "interp"
    args = [
        "interpolate",
        START,
        END,
        "--model",
        str(small_model_dir),
        "--steps",
        "6",
        "--method",
        "slerp",
        "--attempts",
        "3",
        "--out",
        str(out),
        "--property",
        "tpsa",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "slerp path (standard prior) of 6 points" in stdout
    for name in ("path.csv", "path.png", "path.svg", "profile.png"):
        assert (out / name).stat().st_size > 500, name
    df = pd.read_csv(out / "path.csv", keep_default_na=False)
    assert len(df) == 6 and df["step"].tolist() == list(range(6))
    assert {
        "smiles",
        "valid",
        "tanimoto_start",
        "tanimoto_end",
        "qed",
        "sa",
        "esol",
        "mw",
        "logp",
        "tpsa",
        "duplicate_of_previous",
    } <= set(df.columns)
    for smi, valid in zip(df["smiles"], df["valid"]):
        assert bool(valid) == (smi != "")
        if smi:
            assert canonicalize(smi) == smi
    first = pd.read_csv(out / "path.csv")
    assert main(args) == 0  # same seed, same table
    pd.testing.assert_frame_equal(first, pd.read_csv(out / "path.csv"))


@pytest.mark.slow
def test_interpolate_without_out_prints_the_path_and_writes_nothing(
    small_model_dir, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the issue's own example has no --out: it must run and leave no files
    args = [
        "interpolate",
        START,
        END,
        "--model",
        str(small_model_dir),
        "--steps",
        "5",
        "--attempts",
        "2",
        "--property",
        "tpsa",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["step", "t", "smiles", "tanimoto_start", "tanimoto_end", "tpsa"]
    rows = [line.split() for line in lines[1:6]]
    assert [r[0] for r in rows] == ["0", "1", "2", "3", "4"]
    assert [r[1] for r in rows] == ["0.000", "0.250", "0.500", "0.750", "1.000"]
    assert all(r[2] == "(invalid)" or canonicalize(r[2]) == r[2] for r in rows)
    assert "linear path (standard prior) of 5 points" in lines[6]
    assert lines[-1].startswith("nothing written")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_explore_without_out_prints_the_top_neighbours(small_model_dir, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["explore", START, "--model", str(small_model_dir), "--n", "40", "--top", "3", "--device", "cpu"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["smiles", "tanimoto", "count", "qed"]
    summary = next(i for i, line in enumerate(lines) if "40 draws at radius 0.5" in line)
    table = [line.split() for line in lines[1:summary]]
    assert 1 <= len(table) <= 3
    assert all(canonicalize(r[0]) == r[0] for r in table)
    sims = [float(r[1]) for r in table]
    assert sims == sorted(sims, reverse=True)
    assert lines[-1].startswith("nothing written")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_interpolate_unique_says_when_short(small_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "u"
    args = [
        "interpolate",
        START,
        END,
        "--model",
        str(small_model_dir),
        "--steps",
        "3",
        "--unique",
        "500",
        "--max-points",
        "10",
        "--attempts",
        "1",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    assert "asked for 500" in capsys.readouterr().out
    assert len(pd.read_csv(out / "path.csv")) == 9  # 3 -> 5 -> 9


@pytest.mark.slow
def test_explore(small_model_dir, tmp_path, capsys) -> None:
    train = tmp_path / "train.smi"
    train.write_text(f"smiles\n{START}\nOC(=O)c1ccccc1\n")
    out = tmp_path / "explore"
    args = [
        "explore",
        START,
        "--model",
        str(small_model_dir),
        "--n",
        "40",
        "--radius",
        "0.5",
        "--train",
        str(train),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "40 draws at radius 0.5" in stdout
    df = pd.read_csv(out / "neighbours.csv")
    assert len(df) >= 1 and df["smiles"].is_unique
    assert (df["tanimoto"].diff().dropna() <= 0).all()
    assert df["novel"].tolist() == [s != START for s in df["smiles"]]
    assert (out / "neighbours.png").stat().st_size > 500 and (out / "neighbours.svg").stat().st_size > 500


@pytest.mark.slow
def test_interpolate_fitted_endpoints_with_the_bundled_model(tmp_path, capsys) -> None:
    out = tmp_path / "fit"
    args = [
        "interpolate",
        "aspirin",
        "lidocaine",
        "--endpoints",
        "fit",
        "--steps",
        "4",
        "--attempts",
        "2",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    df = pd.read_csv(out / "path.csv", keep_default_na=False)
    assert df["smiles"].iloc[0] == canonicalize("CC(=O)Oc1ccccc1C(=O)O")
    assert df["smiles"].iloc[-1] == canonicalize("CCN(CC)CC(=O)Nc1c(C)cccc1C")
    printed = capsys.readouterr().out
    assert "no code within" not in printed and "the encoder's code of" not in printed


@pytest.mark.slow
def test_interpolate_says_when_an_endpoint_decodes_to_another_molecule(capsys) -> None:
    """With posterior means the bundled model's path may start at a relative of the input: that is said, per end."""
    assert main(["interpolate", "aspirin", "ibuprofen", "--steps", "3", "--attempts", "1", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    from molvae.latent import interpolate
    from molvae.model import MolVAE

    path = interpolate(MolVAE.pretrained("zinc-smiles", device="cpu"), "aspirin", "ibuprofen", steps=3, attempts=1)
    for which, row, smiles in (
        ("start", path.iloc[0], "CC(=O)Oc1ccccc1C(=O)O"),
        ("end", path.iloc[-1], "CC(C)Cc1ccc(C(C)C(=O)O)cc1"),
    ):
        reached = row["smiles"] == canonicalize(smiles)
        assert path.attrs[f"{which}_reached"] == reached
        said = f"{which} endpoint: the encoder's code of" in printed
        assert said == (not reached), printed
        if said:
            assert f"decodes to {row['smiles']} (Tanimoto {row[f'tanimoto_{which}']:.2f})" in printed
    # The bundled model's mean code of aspirin decodes to its methyl ester (README, --endpoints fit).
    assert not path.attrs["start_reached"]


def test_bad_endpoints_option(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "interpolate",
                "CCO",
                "CCN",
                "--model",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
                "--endpoints",
                "nearest",
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--endpoints" in err and "Traceback" not in err


def test_interpolate_in_the_flow_priors_noise_with_the_bundled_model(tmp_path, capsys) -> None:
    out = tmp_path / "path"
    args = [
        "interpolate",
        "aspirin",
        "ibuprofen",
        "--prior",
        "flow",
        "--steps",
        "6",
        "--attempts",
        "2",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "linear path (flow prior) of 6 points" in capsys.readouterr().out
    path = pd.read_csv(out / "path.csv")
    assert len(path) == 6 and path["valid"].iloc[1:-1].any()


def test_a_mixture_prior_cannot_carry_a_path(capsys) -> None:
    code = main(["interpolate", "aspirin", "ibuprofen", "--prior", "gmm", "--steps", "3"])
    assert "the 'gmm' prior has no single map from codes to noise" in _one_line_error(capsys, code)
