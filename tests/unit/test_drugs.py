"""Tests for the bundled drug table and name lookup (molvae.drugs), with real RDKit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rdkit import Chem, rdBase
from rdkit.Chem import rdMolDescriptors

from molvae.drugs import UnknownDrugError, list_drugs, load_drug_table, lookup_drug, resolve_molecule
from molvae.errors import InvalidMoleculeError, MolvaeError

REPO = Path(__file__).resolve().parents[2]

# Drugs the project's docs and examples use by name.
DOC_DRUGS = [
    "aspirin",
    "ibuprofen",
    "celecoxib",
    "paracetamol",
    "caffeine",
    "naproxen",
    "diclofenac",
    "atorvastatin",
    "sildenafil",
    "imatinib",
    "metformin",
    "omeprazole",
    "fluoxetine",
    "diazepam",
]

# Public InChIKeys; the stereo ones (naproxen, atorvastatin, testosterone, simvastatin)
# also pin down the configuration of every stereocentre.
KNOWN_INCHIKEYS = {
    "aspirin": "BSYNRYMUTXBXSQ-UHFFFAOYSA-N",
    "caffeine": "RYYVLZVUVIJVGH-UHFFFAOYSA-N",
    "ibuprofen": "HEFNNWSXXWATRW-UHFFFAOYSA-N",
    "paracetamol": "RZVAJINKPMORJF-UHFFFAOYSA-N",
    "metformin": "XZWYZXLIPXDOLR-UHFFFAOYSA-N",
    "diazepam": "AAOVKJBEBIDNHE-UHFFFAOYSA-N",
    "celecoxib": "RZEKVGVHFLEQIL-UHFFFAOYSA-N",
    "naproxen": "CMWTZPSULFXXJA-VIFPVBQESA-N",
    "atorvastatin": "XUKUURHRXDUEBC-KAYWLYCHSA-N",
    "testosterone": "MUMGGOZAMZWBJJ-DYKIIFRCSA-N",
    "simvastatin": "RYMZZMVNJRMUDD-HGQWONQESA-N",
}


def _all_labels(table) -> list[str]:
    labels = []
    for name, synonyms in zip(table["name"], table["synonyms"]):
        labels.append(name)
        labels.extend(s for s in synonyms.split(";") if s)
    return labels


# ---------------------------------------------------------------- the table


def test_table_has_expected_columns_and_size():
    table = load_drug_table()
    assert list(table.columns) == ["name", "synonyms", "formula", "smiles"]
    assert len(table) >= 220


def test_every_smiles_parses_and_is_rdkit_canonical():
    table = load_drug_table()
    for name, smiles in zip(table["name"], table["smiles"]):
        mol = Chem.MolFromSmiles(smiles)
        assert mol is not None and mol.GetNumAtoms() > 0, name
        assert Chem.MolToSmiles(mol) == smiles, name


def test_every_formula_matches_its_smiles():
    table = load_drug_table()
    for name, formula, smiles in zip(table["name"], table["formula"], table["smiles"]):
        assert rdMolDescriptors.CalcMolFormula(Chem.MolFromSmiles(smiles)) == formula, name


def test_names_and_synonyms_are_unique_case_insensitively():
    labels = [label.casefold() for label in _all_labels(load_drug_table())]
    duplicates = {label for label in labels if labels.count(label) > 1}
    assert not duplicates


def test_no_name_or_synonym_is_itself_a_valid_smiles():
    # resolve_molecule tries names first; a name that also parses as SMILES would be ambiguous.
    with rdBase.BlockLogs():
        parsing = [label for label in _all_labels(load_drug_table()) if Chem.MolFromSmiles(label) is not None]
    assert parsing == []


def test_docs_drugs_are_present():
    names = set(list_drugs())
    assert set(DOC_DRUGS) <= names


@pytest.mark.parametrize("name,inchikey", sorted(KNOWN_INCHIKEYS.items()))
def test_known_inchikeys(name, inchikey):
    assert Chem.MolToInchiKey(Chem.MolFromSmiles(lookup_drug(name))) == inchikey


def test_load_drug_table_returns_copy_that_cannot_corrupt_lookups():
    table = load_drug_table()
    table.loc[table["name"] == "aspirin", "smiles"] = "C"
    assert lookup_drug("aspirin") == "CC(=O)Oc1ccccc1C(=O)O"


def test_check_script_passes_on_bundled_table_and_fails_on_bad_formula(tmp_path):
    spec = importlib.util.spec_from_file_location("check_drug_table", REPO / "scripts" / "check_drug_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bundled = REPO / "molvae" / "resources" / "drugs.csv"
    assert module.main(["check", str(bundled)]) == 0

    lines = bundled.read_text(encoding="utf-8").splitlines()
    bad = [line.replace(",C9H8O4,", ",C9H9O4,") if line.startswith("aspirin,") else line for line in lines]
    bad.append("Aspirin,,C9H8O4,CC(=O)Oc1ccccc1C(=O)O")  # duplicate name in another case
    bad_path = tmp_path / "drugs.csv"
    bad_path.write_text("\n".join(bad) + "\n", encoding="utf-8")
    problems = module.check(bad_path)
    assert any("formula" in p and "aspirin" in p for p in problems)
    assert any("already used" in p for p in problems)
    assert module.main(["check", str(bad_path)]) == 1


# ---------------------------------------------------------------- lookup_drug


def test_lookup_is_case_insensitive_and_trims_whitespace():
    expected = "CC(=O)Oc1ccccc1C(=O)O"
    assert lookup_drug("AsPiRiN") == expected
    assert lookup_drug("  aspirin\n") == expected


def test_lookup_by_synonym_and_multiword_name():
    assert lookup_drug("paracetamol") == lookup_drug("acetaminophen") == lookup_drug("Tylenol")
    assert lookup_drug("acetylsalicylic acid") == lookup_drug("aspirin")
    assert lookup_drug("Acetylsalicylic   Acid") == lookup_drug("aspirin")


def test_unknown_name_suggests_close_match():
    with pytest.raises(UnknownDrugError) as info:
        lookup_drug("asprin")
    message = str(info.value)
    assert "'asprin'" in message
    assert "did you mean: aspirin" in message
    assert "\n" not in message
    assert info.value.suggestions[0] == "aspirin"


def test_unknown_name_without_suggestion_points_to_smiles():
    with pytest.raises(UnknownDrugError, match="pass a SMILES") as info:
        lookup_drug("qqqqzzzz")
    assert info.value.suggestions == []


def test_name_like_input_that_is_no_smiles_either_says_both():
    # "C1CC" (an unclosed ring) is made of name characters; telling the user to pass a SMILES would mislead.
    with pytest.raises(UnknownDrugError) as info:
        resolve_molecule("C1CC")
    message = str(info.value)
    assert message == "'C1CC' is neither a known drug name (no similar name either) nor a valid SMILES"
    assert resolve_molecule("C1CC1")[1] == "C1CC1"
    with pytest.raises(UnknownDrugError, match="pass a SMILES"):
        resolve_molecule("notadrug")  # a word, not a SMILES attempt


def test_unknown_drug_error_is_a_molvae_error():
    assert issubclass(UnknownDrugError, MolvaeError)


def test_list_drugs_returns_primary_names():
    names = list_drugs()
    assert len(names) == len(load_drug_table())
    assert "aspirin" in names
    assert "acetaminophen" not in names  # a synonym, not a primary name


# ---------------------------------------------------------------- resolve_molecule


def test_resolve_name_returns_primary_name_and_smiles():
    assert resolve_molecule("Tylenol") == ("paracetamol", "CC(=O)Nc1ccc(O)cc1")


def test_resolve_smiles_returns_input_and_canonical_smiles():
    assert resolve_molecule(" OCC ") == ("OCC", "CCO")
    assert resolve_molecule("c1ccccc1O") == ("c1ccccc1O", "Oc1ccccc1")


def test_resolve_garbage_smiles_raises_invalid_molecule():
    with pytest.raises(InvalidMoleculeError, match="neither a known drug name nor a valid SMILES"):
        resolve_molecule("C1CC(")


def test_resolve_name_like_unknown_word_raises_unknown_drug_with_suggestion():
    with pytest.raises(UnknownDrugError, match="did you mean: ibuprofen"):
        resolve_molecule("ibuprofin")


def test_resolve_rejects_smiles_with_trailing_words_and_empty_input():
    # RDKit alone would parse "CCO ethanol" as ethanol and "" as an empty molecule.
    with pytest.raises(UnknownDrugError):
        resolve_molecule("CCO ethanol")
    with pytest.raises(InvalidMoleculeError):
        resolve_molecule("   ")


def test_resolve_does_not_log_rdkit_parse_errors(capfd):
    with pytest.raises(MolvaeError):
        resolve_molecule("C1CC(")
    captured = capfd.readouterr()
    assert "SMILES Parse Error" not in captured.err + captured.out


# ---------------------------------------------------------------- robustness


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_arbitrary_text_raises_only_molvae_errors(text):
    for func in (lookup_drug, resolve_molecule):
        try:
            result = func(text)
        except MolvaeError as exc:
            assert "\n" not in str(exc)
        else:
            assert Chem.MolFromSmiles(result if isinstance(result, str) else result[1]) is not None
