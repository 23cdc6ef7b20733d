"""The oracle's records: one dict per proposed molecule, their columns, and the evaluations table they make.

A record's ``status`` is ``scored``, ``supplied``, ``repeat``, ``invalid`` or ``infeasible``
(:class:`~molvae.optimization.oracle.Oracle` says what each costs). The table is what
``evaluations.csv`` holds, and a resumed run reads its records back from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from molvae.errors import ObjectiveError

__all__ = [
    "KNOWN",
    "PROPERTY_COLUMNS",
    "SCORED",
    "STATUSES",
    "make_record",
    "nonfinite_reason",
    "record_columns",
    "records_from_table",
    "records_table",
    "score_columns",
]

# Properties recorded for every scored molecule.
PROPERTY_COLUMNS: tuple[str, ...] = ("mw", "logp", "tpsa", "qed", "sa", "esol")

STATUSES = ("scored", "supplied", "repeat", "invalid", "infeasible")
KNOWN = ("scored", "supplied", "infeasible")  # a distinct valid molecule the run has seen
SCORED = ("scored", "supplied")  # a molecule with scores (paid for, or from an --init file)


def score_columns(keys: Sequence[str]) -> list[str]:
    """The score columns for objectives with these keys: ``score`` for one, ``score_<key>`` for several."""
    return ["score"] if len(keys) == 1 else [f"score_{k}" for k in keys]


def record_columns(scores: Sequence[str]) -> list[str]:
    """The columns of a record (and of evaluations.csv), in order, with these score columns."""
    return [
        "call",
        "round",
        "source",
        "status",
        "smiles",
        *scores,
        "valid",
        "feasible",
        "reason",
        "similarity",
        *PROPERTY_COLUMNS,
    ]


def make_record(
    scores: Sequence[str],
    call: int | None,
    round: int,
    source: str,
    status: str,
    smiles: str,
    values: Sequence[float] | None = None,
    feasible: bool = False,
    reason: str = "",
    similarity: float = np.nan,
    props: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """One record with the score columns ``scores`` (``values``: their values, NaN where None)."""
    row: dict[str, Any] = {"call": call, "round": round, "source": source, "status": status, "smiles": smiles}
    for j, col in enumerate(scores):
        row[col] = float(values[j]) if values is not None else np.nan
    row.update(
        {
            "valid": status != "invalid",
            "feasible": bool(feasible) if status in SCORED else False,
            "reason": reason if status in KNOWN else status,
            "similarity": float(similarity),
        }
    )
    for p in PROPERTY_COLUMNS:
        row[p] = float((props or {}).get(p, np.nan))
    return row


def nonfinite_reason(values: np.ndarray, status: str) -> str:
    """Why a molecule whose scores are not all finite is infeasible (``status``: scored or supplied)."""
    nan = bool(np.isnan(values).any())
    if status == "supplied":
        return "no score given in the --init file" if nan else "the --init file gives an infinite score"
    return f"objective returned {'NaN' if nan else 'an infinite value'}"


def records_table(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """The evaluations table of ``records`` (the call index as a nullable integer)."""
    df = pd.DataFrame(list(records), columns=list(columns))
    df["call"] = df["call"].astype("Int64")
    return df


def records_from_table(df: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The records of an evaluations table, as :func:`make_record` made them (call an int or None, reason a str)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ObjectiveError(f"evaluations table lacks columns {missing} (objectives changed since the run began?)")
    records = []
    for rec in df[list(columns)].to_dict("records"):
        call = rec["call"]
        rec["call"] = None if call is None or (isinstance(call, float) and math.isnan(call)) else int(call)
        rec["reason"] = rec["reason"] if isinstance(rec["reason"], str) else ""
        records.append(rec)
    return records
