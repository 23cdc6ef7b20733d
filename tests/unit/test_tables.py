"""Output tables: the SD format (the other formats are covered through the commands that write them)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from rdkit import Chem

from molvae.errors import MolvaeError
from molvae.tables import TableWriter, table_format


def test_sd_records_carry_name_title_and_fields(tmp_path) -> None:
    out = tmp_path / "t.sdf"
    with TableWriter(out) as writer:
        writer.write(
            pd.DataFrame(
                {
                    "name": ["aspirin", "broken"],
                    "smiles": ["CC(=O)Oc1ccccc1C(=O)O", "C1CC"],
                    "qed": [0.55, math.nan],
                    "valid": [True, False],
                }
            )
        )
        writer.write(pd.DataFrame({"name": [None], "smiles": ["c1ccccc1"], "qed": [0.44], "valid": [True]}))
    assert writer.rows == 3
    records = list(Chem.ForwardSDMolSupplier(str(out)))
    assert [m.GetNumAtoms() for m in records] == [13, 0, 6]  # an empty molecule keeps the invalid row's place
    assert [m.GetProp("_Name") for m in records] == ["aspirin", "broken", ""]
    assert records[0].GetPropsAsDict() == {"smiles": "CC(=O)Oc1ccccc1C(=O)O", "qed": 0.55, "valid": "True"}
    assert records[1].GetPropsAsDict() == {"smiles": "C1CC", "valid": "False"}  # NaN left out
    assert Chem.MolToSmiles(records[2]) == "c1ccccc1"
    conformer = records[0].GetConformer()  # 2D coordinates, so viewers draw the molecule
    assert not conformer.Is3D() and any(conformer.GetAtomPosition(i).x != 0 for i in range(13))


def test_sd_output_needs_a_smiles_column(tmp_path) -> None:
    out = tmp_path / "t.sdf"
    with pytest.raises(MolvaeError, match="an SD file needs a 'smiles' column of SMILES; the table has mol, score"):
        with TableWriter(out) as writer:
            writer.write(pd.DataFrame({"mol": ["CCO"], "score": [1.0]}))
    assert not out.exists() and not list(tmp_path.iterdir())
    with TableWriter(out, molecule_column="mol") as writer:
        writer.write(pd.DataFrame({"mol": ["CCO"], "score": [1.0]}))
    assert Chem.MolToSmiles(next(Chem.ForwardSDMolSupplier(str(out)))) == "CCO"


@pytest.mark.parametrize(
    "name, kind", [("a.sdf", "sdf"), ("a.SDF.gz", "sdf"), ("a.csv.gz", "csv"), ("a.parquet", "parquet")]
)
def test_table_format_from_the_name(name, kind) -> None:
    assert table_format(name) == kind
