"""Initial designs: the molecules a run scores (round 0) before the GP has anything to learn from.

* from a file (``--init``), with its scores where it has a column per objective;
* around the lead, under a similarity constraint;
* otherwise a random sample of MOSES training molecules (none for ``screen``, which walks the
  training set anyway, nor for ``prior``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from molvae.chemistry import diverse_subset, lookup_property
from molvae.data import iter_records, moses_file, read_smiles, record_fields, sample_smiles
from molvae.errors import MolvaeError
from molvae.latent import neighbourhood
from molvae.optimization.config import OptimizeConfig
from molvae.optimization.constraints import Constraints
from molvae.optimization.objectives import BUILTIN_OBJECTIVES, Objective
from molvae.optimization.oracle import Oracle
from molvae.optimization.store import run_objectives

log = logging.getLogger(__name__)

__all__ = ["initial_design", "init_score_fields", "lead_design", "moses_design", "file_design"]

Rows = list[dict[str, Any]]


def initial_design(
    model,
    oracle: Oracle,
    config: OptimizeConfig,
    method: str,
    constraints: Constraints,
    objectives: Sequence[Objective],
) -> Rows:
    """Score the run's initial design (round 0); returns the oracle's rows."""
    n = min(config.n_init, oracle.remaining)  # 0 with --budget 0: nothing to draw
    if config.init_file:
        return file_design(oracle, config.init_file, config.init_smiles_column, objectives)
    if n > 0 and method not in ("screen", "prior") and constraints.min_similarity:
        chosen = lead_design(model, constraints, n, config.init_radius, config.seed)
    elif n > 0 and method != "screen":
        chosen = moses_design(model, n, config.init_pool, config.seed)
    else:
        return []
    return oracle.evaluate(chosen, round=0, source="init")


def moses_design(model, n: int, pool_size: int, seed: int) -> list[str]:
    """``n`` random MOSES training molecules the model can encode, from a seeded sample of ``pool_size``."""
    rng = np.random.default_rng(seed)
    # a random sample, not the first lines: MOSES is ordered (see sample_smiles)
    pool = sample_smiles(moses_file("train"), pool_size, seed=seed, column="SMILES")
    order = rng.permutation(len(pool))
    chosen: list[str] = []
    for start in range(0, len(order), 4 * n):  # skip molecules the model cannot encode
        cand = [pool[i] for i in order[start : start + 4 * n]]
        z = model.encode(cand, errors="nan")
        chosen += [s for s, row in zip(cand, z) if np.all(np.isfinite(row))]
        if len(chosen) >= n:
            break
    return chosen[:n]


def lead_design(model, constraints: Constraints, n: int, init_radius: float, seed: int) -> list[str]:
    """The lead and ``n - 1`` molecules decoded around its code: random MOSES molecules would almost all
    fail the similarity constraint, leaving the GP a flat landscape to learn from.

    Decoding is cheap next to the oracle, so many codes are drawn (``32 n`` per radius) and
    the design is a diverse subset (MaxMin, away from the lead) of the feasible ones: the
    most similar ones would be near-copies of the lead that teach the GP little. While
    fewer than ``n - 1`` are feasible the radius halves (how far a latent step moves the
    decoded molecule depends on the model); if that still leaves fewer than ``n - 1``
    distinct molecules, it widens. Short of feasible ones, the most similar others fill
    the design (without ``score_infeasible`` they cost no call).
    """
    lead = constraints.reference
    floor = constraints.min_similarity or 0.0
    found: dict[str, float] = {}
    r = init_radius
    for attempt, radius in enumerate((r, r / 2, r / 4, r / 8, 2 * r, 4 * r)):
        if attempt >= 4 and len(found) >= n - 1:
            break  # wider draws only when the narrow ones gave too few distinct molecules
        table = neighbourhood(model, lead, n=32 * n, radius=radius, seed=seed + attempt, properties=())
        found.update(zip(table["smiles"], table["tanimoto"]))
        found.pop(lead, None)
        if sum(v >= floor for v in found.values()) >= n - 1:
            break
    feasible = sorted(smi for smi, v in found.items() if v >= floor)
    picked = [feasible[i] for i in diverse_subset(feasible, n - 1, start=lead, seed=seed)]
    others = sorted((smi for smi in found if found[smi] < floor), key=lambda smi: (-found[smi], smi))
    return [lead, *picked, *others][:n]


def column_sign(objective: str) -> float:
    """The sign that turns a column named like the objective into its scores.

    Such a column holds the property as `molvae properties` and evaluations.csv write it: raw SA for the
    objective sa, which is minus SA, and the probability for admet:hERG, which is minus it.
    """
    if objective in BUILTIN_OBJECTIVES:
        return BUILTIN_OBJECTIVES[objective][1]
    prop = lookup_property(objective)  # admet:<endpoint>; None for a custom objective
    return 1.0 if prop is None or prop.direction == 0 else prop.direction


def file_design(oracle: Oracle, path: str, smiles_column: str | None, objectives: Sequence[Objective]) -> Rows:
    """The molecules of an --init file: with the file's scores where it has a column (or SD data field) per
    objective, named as in evaluations.csv or by the objective (they cost no call); otherwise scored."""
    fields = record_fields(path, smiles_column)
    alt = [o.name for o in objectives]
    have = init_score_fields(path, fields, alt, oracle.score_columns)
    if not all(h is not None for h in have):
        log.info(
            "--init %s: no column of scores for %s; its molecules are scored",
            path,
            ", ".join(a for a, h in zip(alt, have) if h is None),
        )
        smiles = read_smiles(path, column=smiles_column, allow_empty=False)
        return oracle.evaluate(smiles, round=0, source="init-file")
    log.info(
        "--init %s: scores from %s",
        path,
        ", ".join(f"column {h!r}" + (f" for {a}" if h != a else "") for h, a in zip(have, alt)),
    )
    signs = [column_sign(a) if h == a else 1.0 for h, a in zip(have, alt)]
    records = list(iter_records(path, smiles_column, keep=have, allow_empty=False))
    scores = np.full((len(records), len(have)), np.nan)
    for i, (_, values) in enumerate(records):
        for j, value in enumerate(values):
            if value is None or (isinstance(value, str) and not value.strip()):
                continue  # no score given: NaN, as an empty cell always was
            try:
                scores[i, j] = signs[j] * float(value)
            except (TypeError, ValueError):
                raise MolvaeError(
                    f"{path}, record {i + 1}: score column {have[j]!r} holds {value!r}, not a number"
                ) from None
    return oracle.add_supplied([smiles for smiles, _ in records], scores, round=0, source="init-file")


def init_score_fields(
    path: str, fields: Sequence[str], objectives: Sequence[str], columns: Sequence[str]
) -> list[str | None]:
    """Per objective, the field of an --init file holding its values, or None (``columns``: the run's score columns).

    A column named as the objective (``qed``, as `molvae properties` writes it) says what
    it holds; ``score_<objective>`` too. A bare ``score`` column holds whatever objective
    the run that wrote it optimized: it is used only where that run's ``config.json``
    beside the file names these objectives, or where there is none to ask.
    """
    owner = run_objectives(Path(path).parent)
    chosen: list[str | None] = []
    for col, name in zip(columns, objectives):
        if name in fields:
            chosen.append(name)
        elif col not in fields:
            chosen.append(None)
        elif col == "score" and owner is not None and owner != list(objectives):
            raise MolvaeError(
                f"--init {path}: its score column holds {', '.join(owner)} (the run's config.json "
                f"says so), not {name}; give a file with a {name!r} column (`molvae properties` "
                "writes one) or a list of molecules to have them scored"
            )
        else:
            chosen.append(col)
    return chosen
