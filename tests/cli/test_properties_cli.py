"""End-to-end tests of `molvae properties` through the real CLI entry point."""

from __future__ import annotations

import gzip
import math

import pandas as pd
import pytest

from molvae import chemistry
from molvae.cli.main import main
from molvae.data import read_smiles
from molvae.errors import InputFileError

SMI_LINES = [
    "SMILES",  # header line, skipped
    "CCO ethanol",  # name after the SMILES is ignored
    "not_a_molecule",
    "",  # blank line: kept as an invalid row
    "c1ccccc1",
    "C1CC",
]


def _read_out(path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=True)


def test_smi_file_rows_and_flags(tmp_path, capsys):
    src = tmp_path / "mols.smi"
    src.write_text("\n".join(SMI_LINES) + "\n")
    out = tmp_path / "props.csv"
    assert main(["properties", "--input", str(src), "--out", str(out)]) == 0

    table = _read_out(out)
    assert len(table) == 5
    assert list(table.columns) == ["smiles", "canonical_smiles", "valid", *chemistry.default_properties()]
    assert table["valid"].tolist() == [True, False, False, True, False]
    assert table.loc[0, "canonical_smiles"] == "CCO"
    assert table.loc[0, "mw"] == pytest.approx(46.069, abs=1e-3)
    assert table.loc[3, "aromatic_proportion"] == 1.0
    assert table.loc[[1, 2, 4], "qed"].isna().all()
    assert math.isnan(table.loc[2, "smiles"])  # the blank line, written as an empty field

    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1
    assert "5 rows" in summary[0] and "3 invalid" in summary[0]


def test_property_subset_and_jobs(tmp_path):
    src = tmp_path / "mols.txt"
    src.write_text("CC(=O)Oc1ccccc1C(=O)O\nCn1c(=O)c2c(ncn2C)n(C)c1=O\n")
    out = tmp_path / "sub" / "props.csv"
    code = main(["properties", "-i", str(src), "-o", str(out), "--properties", "mw, qed", "--jobs", "2"])
    assert code == 0
    table = _read_out(out)
    assert list(table.columns) == ["smiles", "canonical_smiles", "valid", "mw", "qed"]
    assert table["mw"].tolist() == pytest.approx([180.159, 194.194], abs=1e-3)
    assert table.loc[0, "qed"] == pytest.approx(0.550, abs=5e-4)


def test_csv_with_smiles_column_any_case(tmp_path):
    src = tmp_path / "mols.csv"
    src.write_text("id,Smiles,activity\n1,CCO,0.5\n2,xyz,NA\n3,,1.0\n")
    out = tmp_path / "props.csv"
    assert main(["properties", "--input", str(src), "--out", str(out), "--properties", "logp"]) == 0
    table = _read_out(out)
    assert table["valid"].tolist() == [True, False, False]
    assert table.loc[0, "logp"] == pytest.approx(-0.0014, abs=1e-4)


def test_tsv_gz_with_explicit_column(tmp_path):
    src = tmp_path / "mols.tsv.gz"
    with gzip.open(src, "wt") as handle:
        handle.write("name\tstructure\nbenzene\tc1ccccc1\nbad\tC1CC\n")
    out = tmp_path / "props.csv"
    args = ["properties", "--input", str(src), "--out", str(out), "--smiles-column", "structure"]
    assert main(args + ["--properties", "mw"]) == 0
    assert _read_out(out)["valid"].tolist() == [True, False]


def test_parquet_input(tmp_path):
    src = tmp_path / "mols.parquet"
    pd.DataFrame({"smiles": ["CCO", None, "xyz"], "y": [1, 2, 3]}).to_parquet(src)
    assert read_smiles(src) == ["CCO", "", "xyz"]


def test_smi_gz_reader(tmp_path):
    src = tmp_path / "mols.smi.gz"
    with gzip.open(src, "wt") as handle:
        handle.write("CCO\tx\n\nc1ccccc1\n")
    assert read_smiles(src) == ["CCO", "", "c1ccccc1"]


def test_csv_without_smiles_column_names_columns(tmp_path, capsys):
    src = tmp_path / "mols.csv"
    src.write_text("id,structure\n1,CCO\n")
    code = main(["properties", "--input", str(src), "--out", str(tmp_path / "o.csv")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "structure" in err and "id" in err
    assert not (tmp_path / "o.csv").exists()


def test_missing_file_is_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nope.smi"
    code = main(["properties", "--input", str(missing), "--out", str(tmp_path / "o.csv")])
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert str(missing) in err
    assert "Traceback" not in err


def test_directory_as_input(tmp_path, capsys):
    code = main(["properties", "--input", str(tmp_path), "--out", str(tmp_path / "o.csv")])
    assert code == 2
    assert "directory" in capsys.readouterr().err


def test_unknown_property_is_user_error(tmp_path, capsys):
    src = tmp_path / "mols.smi"
    src.write_text("CCO\n")
    code = main(["properties", "--input", str(src), "--out", str(tmp_path / "o.csv"), "--properties", "mass"])
    assert code == 2
    assert "mass" in capsys.readouterr().err


def test_unsupported_extension(tmp_path):
    src = tmp_path / "mols.sdf"
    src.write_text("CCO\n")
    with pytest.raises(InputFileError, match="unsupported"):
        read_smiles(src)


def test_output_replaced_atomically(tmp_path):
    src = tmp_path / "mols.smi"
    src.write_text("CCO\nCCN\n")
    out = tmp_path / "props.csv"
    out.write_text("old contents\n")
    assert main(["properties", "--input", str(src), "--out", str(out), "--properties", "mw"]) == 0
    assert len(_read_out(out)) == 2
    # Only the input and the output remain: no temporary file left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mols.smi", "props.csv"]


def test_help_lists_every_property_of_the_table(capsys):
    with pytest.raises(SystemExit):
        main(["properties", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert ", ".join(chemistry.PROPERTIES) in help_text


def test_keep_columns_carries_ids_through_chunks(tmp_path, capsys):
    src = tmp_path / "assay.csv"
    src.write_text("compound_id,SMILES,pIC50\nA-1,CCO,5.2\nA-2,not_a_molecule,6.0\nA-3,c1ccccc1\n")
    out = tmp_path / "props.tsv"
    # --chunk-size 2: the kept values must stay with their rows across chunk boundaries.
    assert (
        main(
            [
                "properties",
                "--input",
                str(src),
                "--out",
                str(out),
                "--properties",
                "mw",
                "--keep-columns",
                "compound_id,pIC50",
                "--chunk-size",
                "2",
            ]
        )
        == 0
    )
    table = pd.read_csv(out, sep="\t", keep_default_na=False)
    assert list(table.columns) == ["compound_id", "pIC50", "smiles", "canonical_smiles", "valid", "mw"]
    assert table["compound_id"].tolist() == ["A-1", "A-2", "A-3"]
    assert table["pIC50"].astype(str).tolist() == ["5.2", "6.0", ""]
    assert table["valid"].tolist() == [True, False, True]


def test_keep_name_of_smi_lines(tmp_path):
    src = tmp_path / "mols.smi"
    src.write_text("\n".join(SMI_LINES) + "\n")
    out = tmp_path / "props.parquet"
    assert (
        main(["properties", "--input", str(src), "--out", str(out), "--properties", "qed", "--keep-columns", "name"])
        == 0
    )
    table = pd.read_parquet(out)
    assert table["name"].tolist() == ["ethanol", "", "", "", ""]
    assert table["smiles"].tolist() == ["CCO", "not_a_molecule", "", "c1ccccc1", "C1CC"]


@pytest.mark.parametrize(
    "source, keep, needles",
    [
        ("assay.csv", "ID", ["assay.csv: no column 'ID' to keep; columns found: compound_id, SMILES"]),
        ("mols.smi", "compound_id", ["a .smi file has no columns", "'name'", "not 'compound_id'"]),
        ("assay.csv", "mw", ["--keep-columns: the output already has a column 'mw'"]),
        ("assay.csv", "compound_id,compound_id", ["--keep-columns: 'compound_id' given twice"]),
        ("assay.csv", "compound_id,", ["--keep-columns: empty column name"]),
    ],
)
def test_keep_columns_bad_input(tmp_path, capsys, source, keep, needles):
    (tmp_path / "assay.csv").write_text("compound_id,SMILES\nA-1,CCO\n")
    (tmp_path / "mols.smi").write_text("CCO ethanol\n")
    out = tmp_path / "props.csv"
    assert (
        main(
            [
                "properties",
                "--input",
                str(tmp_path / source),
                "--out",
                str(out),
                "--properties",
                "mw",
                "--keep-columns",
                keep,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not out.exists()


def test_sd_file_input_with_title_and_data_fields(tmp_path, capsys):
    from rdkit import Chem

    src = tmp_path / "hits.sdf"
    with Chem.SDWriter(str(src)) as writer:
        for i, smi in enumerate(["CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"]):
            mol = Chem.MolFromSmiles(smi)
            mol.SetProp("_Name", ["aspirin", "caffeine"][i])
            mol.SetProp("vendor_id", f"V{i}")
            writer.write(mol)
    out = tmp_path / "props.csv"
    assert (
        main(
            [
                "properties",
                "--input",
                str(src),
                "--out",
                str(out),
                "--properties",
                "mw",
                "--keep-columns",
                "name,vendor_id",
            ]
        )
        == 0
    )
    table = _read_out(out)
    assert table[["name", "vendor_id"]].values.tolist() == [["aspirin", "V0"], ["caffeine", "V1"]]
    assert table["mw"].round(1).tolist() == [180.2, 194.2]
    assert "wrote 2 rows (0 invalid)" in capsys.readouterr().out
