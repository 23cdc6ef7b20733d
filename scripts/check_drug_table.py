#!/usr/bin/env python
"""Verify molvae/resources/drugs.csv; exit 1 (listing every problem) if anything is off.

For each row: the SMILES parses, is already RDKit's canonical isomeric SMILES, and its
molecular formula equals the hand-written ``formula`` column (the formula is the
independent fact that catches a wrong structure). Across rows: names and synonyms are
unique (case-insensitive), and the table has at least MIN_ROWS drugs.

Usage: python scripts/check_drug_table.py [path/to/drugs.csv]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from rdkit import Chem, rdBase
from rdkit.Chem import rdMolDescriptors

COLUMNS = ["name", "synonyms", "formula", "smiles"]
MIN_ROWS = 220
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "molvae" / "resources" / "drugs.csv"


def _key(text: str) -> str:
    # Same normalization as molvae.drugs lookups, so "unique here" means "unambiguous there".
    return " ".join(text.split()).casefold()


def check(path: Path) -> list[str]:
    """Return a list of human-readable problems (empty when the table is valid)."""
    problems: list[str] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != COLUMNS:
            return [f"columns are {reader.fieldnames}, expected {COLUMNS}"]
        rows = list(reader)

    if len(rows) < MIN_ROWS:
        problems.append(f"only {len(rows)} drugs, expected at least {MIN_ROWS}")

    owner: dict[str, str] = {}
    for lineno, row in enumerate(rows, start=2):
        name = row["name"]
        where = f"line {lineno} ({name!r})"
        if not name.strip():
            problems.append(f"line {lineno}: empty name")
            continue
        synonyms = row["synonyms"].split(";") if row["synonyms"] else []
        for label in [name, *synonyms]:
            if not label.strip() or label != label.strip():
                problems.append(f"{where}: empty or space-padded name/synonym {label!r}")
                continue
            key = _key(label)
            if key in owner:
                problems.append(f"{where}: {label!r} already used by {owner[key]!r}")
            else:
                owner[key] = name

        with rdBase.BlockLogs():
            mol = Chem.MolFromSmiles(row["smiles"])
        if mol is None or mol.GetNumAtoms() == 0:
            problems.append(f"{where}: SMILES does not parse: {row['smiles']!r}")
            continue
        canonical = Chem.MolToSmiles(mol)
        if canonical != row["smiles"]:
            problems.append(f"{where}: SMILES is not RDKit-canonical; expected {canonical!r}")
        formula = rdMolDescriptors.CalcMolFormula(mol)
        if formula != row["formula"]:
            problems.append(f"{where}: formula of SMILES is {formula}, table says {row['formula']}")
    return problems


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_PATH
    problems = check(path)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    with path.open(encoding="utf-8") as fh:
        n = sum(1 for _ in fh) - 1
    print(f"{path}: {n} drugs OK (canonical SMILES, formulas, unique names)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
