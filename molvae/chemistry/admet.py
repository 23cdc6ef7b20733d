"""ADMET-AI's endpoints (Swanson et al. 2024): Chemprop ensembles trained on the TDC ADMET data sets.

An optional extra (``pip install "molvae[admet]"``). ``DIRECTIONS`` is molvae's own table:
which way each endpoint is better as an objective, and its typical spread for ``target()`` and
``range()``; names, units and task types are read from the metadata file ADMET-AI ships
(``admet_ai/resources/data/admet.csv``, which has no direction). A classification endpoint is a
probability (0-1).

``predict`` runs the loaded ensembles directly rather than through ``ADMETModel.predict``,
which prints progress bars and notices to standard output, drops invalid SMILES from its result
and raises on an empty batch. Here invalid inputs are NaN rows in input order, nothing is printed,
and the model is loaded once per process.

Trust: Chemprop unpickles the checkpoints (``torch.load(weights_only=False)``) from the installed
``admet_ai`` package; molvae never passes it a user-supplied file.
"""

from __future__ import annotations

import csv
import functools
import importlib.machinery
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem

from molvae.chemistry.molecules import as_mol
from molvae.errors import MissingExtraError

__all__ = [
    "DIRECTIONS",
    "INSTALL_HINT",
    "PREFIX",
    "SOLUBILITY",
    "Endpoint",
    "available",
    "missing",
    "endpoint",
    "endpoints",
    "predict",
]

INSTALL_HINT = 'pip install "molvae[admet]"'
PREFIX = "admet:"  # objectives and property columns name an endpoint admet:<id>
SOLUBILITY = "Solubility_AqSolDB"
BATCH_SIZE = 256

# endpoint id -> (direction, scale). Direction +1: higher is better as an objective, -1: lower is, 0: it
# depends on the project (such an endpoint goes into target() or range(), not a bare objective). Scale: the
# spread target() and range() divide distances by (a probability: 0.1, as for QED).
DIRECTIONS: dict[str, tuple[float, float]] = {
    # absorption
    "HIA_Hou": (1.0, 0.1),
    "Bioavailability_Ma": (1.0, 0.1),
    SOLUBILITY: (1.0, 1.0),
    "Lipophilicity_AstraZeneca": (0.0, 1.0),  # logD: too high and too low both hurt
    "HydrationFreeEnergy_FreeSolv": (0.0, 1.0),
    "Caco2_Wang": (1.0, 0.5),
    "PAMPA_NCATS": (1.0, 0.1),
    "Pgp_Broccatelli": (-1.0, 0.1),  # P-gp inhibition: drug-drug interactions
    # distribution
    "BBB_Martins": (0.0, 0.1),  # wanted for a CNS target, unwanted elsewhere
    "PPBR_AZ": (0.0, 10.0),
    "VDss_Lombardo": (0.0, 1.0),
    # excretion
    "Half_Life_Obach": (1.0, 10.0),
    "Clearance_Hepatocyte_AZ": (-1.0, 10.0),
    "Clearance_Microsome_AZ": (-1.0, 10.0),
    # metabolism: inhibiting a CYP risks interactions; being a substrate is neither good nor bad
    "CYP1A2_Veith": (-1.0, 0.1),
    "CYP2C19_Veith": (-1.0, 0.1),
    "CYP2C9_Veith": (-1.0, 0.1),
    "CYP2D6_Veith": (-1.0, 0.1),
    "CYP3A4_Veith": (-1.0, 0.1),
    "CYP2C9_Substrate_CarbonMangels": (0.0, 0.1),
    "CYP2D6_Substrate_CarbonMangels": (0.0, 0.1),
    "CYP3A4_Substrate_CarbonMangels": (0.0, 0.1),
    # toxicity: every one is lower-is-better (LD50_Zhu is log(1/LD50): higher is more toxic)
    "hERG": (-1.0, 0.1),
    "ClinTox": (-1.0, 0.1),
    "AMES": (-1.0, 0.1),
    "DILI": (-1.0, 0.1),
    "Carcinogens_Lagunin": (-1.0, 0.1),
    "LD50_Zhu": (-1.0, 0.5),
    "Skin_Reaction": (-1.0, 0.1),
    "NR-AR": (-1.0, 0.1),
    "NR-AR-LBD": (-1.0, 0.1),
    "NR-AhR": (-1.0, 0.1),
    "NR-Aromatase": (-1.0, 0.1),
    "NR-ER": (-1.0, 0.1),
    "NR-ER-LBD": (-1.0, 0.1),
    "NR-PPAR-gamma": (-1.0, 0.1),
    "SR-ARE": (-1.0, 0.1),
    "SR-ATAD5": (-1.0, 0.1),
    "SR-HSE": (-1.0, 0.1),
    "SR-MMP": (-1.0, 0.1),
    "SR-p53": (-1.0, 0.1),
}


@dataclass(frozen=True)
class Endpoint:
    """One ADMET-AI endpoint: ADMET-AI's metadata and molvae's direction and scale."""

    id: str
    name: str  # ADMET-AI's name, e.g. "Aqueous Solubility"
    category: str  # Absorption, Distribution, Metabolism, Excretion, Toxicity
    task_type: str  # classification (a probability) or regression
    units: str
    direction: float
    scale: float
    minimum: float  # physical range: regression outputs are clipped to it
    maximum: float

    @property
    def description(self) -> str:
        """One line for --help and objective names."""
        return f"ADMET-AI {self.name} ({self.id}, {self.units})"


def _spec() -> importlib.machinery.ModuleSpec | None:
    """Where admet_ai is installed, found without importing it; None where it is not, or an import hook refuses it."""
    try:
        return importlib.util.find_spec("admet_ai")
    except ImportError:
        return None


def available() -> bool:
    """Whether ADMET-AI is installed (found without importing it)."""
    return _spec() is not None


def missing(what: str, cause: str = "not installed") -> MissingExtraError:
    """The one-line error for ``what`` without ADMET-AI: how to install it, and that esol needs nothing."""
    return MissingExtraError(f"{what} needs ADMET-AI ({cause}): {INSTALL_HINT}; esol, the ESOL estimate, needs nothing")


def _package_dir(what: str) -> Path:
    spec = _spec()
    if spec is None or not spec.submodule_search_locations:
        raise missing(what, "not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def endpoints() -> dict[str, Endpoint]:
    """Every endpoint of ``DIRECTIONS``, with the installed ADMET-AI's metadata (read without importing it)."""
    table = _package_dir("an ADMET-AI endpoint") / "resources" / "data" / "admet.csv"
    with table.open(newline="", encoding="utf-8") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    out = {}
    for key, (direction, scale) in DIRECTIONS.items():
        row = rows[key]
        units = "probability" if row["task_type"] == "classification" else row["units"]
        out[key] = Endpoint(
            key,
            row["name"],
            row["category"],
            row["task_type"],
            units,
            direction,
            scale,
            float(row["minimum"]),
            float(row["maximum"]),
        )
    return out


def endpoint(key: str) -> Endpoint:
    """The endpoint ``key`` (an id of ``DIRECTIONS``, any case); :class:`KeyError` if there is none.

    Without ADMET-AI installed, a known endpoint raises :class:`~molvae.errors.MissingExtraError`.
    """
    if key not in DIRECTIONS:
        folded = {k.lower(): k for k in DIRECTIONS}
        key = folded.get(key.lower(), key)
    if key not in DIRECTIONS:
        raise KeyError(key)
    if not available():
        raise missing(PREFIX + key)
    return endpoints()[key]


@functools.cache
def _model() -> Any:
    """ADMET-AI's ensembles, loaded once per process, in evaluation mode."""
    try:
        # Imported here, not at the top: admet_ai pulls in Chemprop and Lightning, seconds of start-up
        # that every molvae command not using it would pay.
        from admet_ai import ADMETModel
    except ImportError as exc:
        raise missing("ADMET-AI scoring", str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    model = ADMETModel(include_physchem=False, drugbank_path=None, num_workers=0)
    for models in model.model_lists:
        for mpnn in models:
            mpnn.eval()
    return model


def _ensemble_mean(models: Sequence[Any], loader: Any) -> np.ndarray:
    """Mean over an ensemble of one Chemprop model's forward pass over every batch (its predict step)."""
    import torch  # not at the top: molvae.chemistry stays free of torch; admet_ai has imported it by now

    per_model = []
    with torch.inference_mode():
        for mpnn in models:
            device = next(mpnn.parameters()).device
            batches = []
            for bmg, v_d, x_d, *_ in loader:
                bmg.to(device)  # in place
                batches.append(mpnn(bmg, v_d, x_d))
            per_model.append(torch.cat(batches))
        return torch.stack(per_model).mean(dim=0).cpu().numpy()


def predict(items: Sequence[str | Chem.Mol], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """ADMET-AI's ensemble-mean prediction of each endpoint in ``keys`` for each input, NaN where invalid.

    Same featurization and averaging as ``ADMETModel.predict``; regression outputs are clipped to the
    endpoint's physical range (a clearance is not negative). An empty or all-invalid batch gives all NaN.
    """
    wanted = [endpoint(key) for key in keys]
    mols = [as_mol(item) for item in items]
    out = {e.id: np.full(len(mols), math.nan) for e in wanted}
    valid = np.array([mol is not None for mol in mols], dtype=bool)
    model = _model()  # loaded (or the missing extra reported) even for a batch with nothing to score
    if not valid.any():
        return out
    from chemprop.data import MoleculeDatapoint, MoleculeDataset
    from chemprop.data.dataloader import build_dataloader

    dataset = MoleculeDataset([MoleculeDatapoint(mol=mol) for mol in mols if mol is not None])
    # drop_last=False: Chemprop's default drops a last batch of one molecule (for batch norm in training)
    loader = build_dataloader(dataset, batch_size=BATCH_SIZE, num_workers=0, shuffle=False, drop_last=False)
    for tasks, models in zip(model.task_lists, model.model_lists, strict=True):
        columns = [(i, task) for i, task in enumerate(tasks) if task in out]
        if not columns:
            continue
        preds = _ensemble_mean(models, loader)
        for i, task in columns:
            out[task][valid] = preds[:, i]
    for e in wanted:
        if e.task_type == "regression":
            out[e.id] = np.clip(out[e.id], e.minimum, e.maximum)
    return out
