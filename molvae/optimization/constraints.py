"""Constraints on optimized molecules: similarity to a reference, structural alerts, property ranges.

They are RDKit computations, cheap next to an oracle worth budgeting: a molecule that fails
one is recorded as infeasible, with the reason, before the oracle sees it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from molvae import chemistry
from molvae.drugs import resolve_molecule
from molvae.errors import ObjectiveError

__all__ = ["Constraints", "parse_range", "range_table"]


def parse_range(text: str) -> tuple[str, tuple[float, float]]:
    """``"mw=200:450"`` -> ``("mw", (200.0, 450.0))``: one property range constraint (finite bounds)."""
    try:
        prop, value = text.split("=", 1)
        lo, hi = value.split(":", 1)
        bounds = (float(lo), float(hi))
    except ValueError:
        raise ObjectiveError(f"expected PROPERTY=LOW:HIGH (e.g. mw=200:500), got {text!r}") from None
    if not all(math.isfinite(b) for b in bounds):
        raise ObjectiveError(
            f"{text!r}: the bounds must be finite numbers (for an open end, a bound beyond any "
            "molecule, such as mw=0:100000)"
        )
    return prop.strip(), bounds


def range_table(ranges: Sequence[tuple[str, tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    """Parsed ranges by property; a property given twice is an error (which one was meant is not known)."""
    table: dict[str, tuple[float, float]] = {}
    for prop, bounds in ranges:
        if prop in table:
            raise ObjectiveError(
                f"--range {prop} given twice ({_span(table[prop])} and {_span(bounds)}); give one range per property"
            )
        table[prop] = bounds
    return table


def _span(bounds: tuple[float, float]) -> str:
    return f"{bounds[0]:g}:{bounds[1]:g}"


@dataclass
class Constraints:
    """Feasibility rules: similarity to a reference molecule, structural alerts, property ranges."""

    reference: str | None = None  # a drug name or SMILES; stored as canonical SMILES
    reference_name: str | None = None
    min_similarity: float | None = None
    alerts: Sequence[str] | None = None  # RDKit catalogs, e.g. ("PAINS", "BRENK"); None = no filter
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reference is not None:
            # Python callers pass "celecoxib" as the CLI's --similar-to does; the search compares
            # canonical SMILES, so a name left as it was failed deep in the initial design.
            name, self.reference = resolve_molecule(self.reference)
            if self.reference_name is None:
                self.reference_name = name
        if self.min_similarity is not None:
            if self.reference is None:
                raise ObjectiveError("a minimum similarity needs a reference molecule (--similar-to)")
            if not 0.0 <= self.min_similarity <= 1.0:
                raise ObjectiveError(f"min similarity must be in [0, 1], got {self.min_similarity}")
        for prop, (lo, hi) in self.ranges.items():
            found = chemistry.lookup_property(prop)  # a table entry, or admet:<endpoint>
            if found is None:
                raise ObjectiveError(
                    f"unknown property {prop!r} in range; known: {', '.join(sorted(chemistry.PROPERTIES))}, "
                    f"{chemistry.admet.PREFIX}<endpoint>"
                )
            chemistry.require_extra(found)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ObjectiveError(f"range for {prop}: the bounds must be finite numbers, got [{lo}, {hi}]")
            if lo > hi:
                raise ObjectiveError(f"empty range for {prop}: [{lo}, {hi}]")
        if self.alerts:
            # Build the catalogs now: a typo must stop the run before the model loads, not at the first score.
            try:
                chemistry.passes_alerts([], tuple(self.alerts))
            except ValueError as exc:
                raise ObjectiveError(f"--alerts: {exc}") from None

    @property
    def active(self) -> bool:
        return self.min_similarity is not None or bool(self.alerts) or bool(self.ranges)

    def check(
        self, smiles: Sequence[str], properties: dict[str, np.ndarray] | None = None
    ) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(feasible, reason, similarity) for valid canonical SMILES."""
        smiles = list(smiles)
        n = len(smiles)
        reasons: list[list[str]] = [[] for _ in range(n)]
        similarity = np.full(n, np.nan)
        if self.reference is not None and n:
            similarity = chemistry.tanimoto_similarity(self.reference, smiles)
            if self.min_similarity is not None:
                for i, s in enumerate(similarity):
                    if not s >= self.min_similarity:
                        reasons[i].append(f"similarity {s:.2f} < {self.min_similarity:g}")
        if self.alerts and n:
            ok = chemistry.passes_alerts(smiles, tuple(self.alerts))
            for i in np.flatnonzero(~ok):
                reasons[i].append("structural alert")
        for prop, (lo, hi) in self.ranges.items():
            values = (properties or {}).get(prop)
            if values is None:
                values = chemistry.lookup_property(prop)(smiles)  # type: ignore[misc]
            for i, v in enumerate(values):
                if not lo <= v <= hi:
                    reasons[i].append(f"{prop} {v:.4g} outside [{lo:g}, {hi:g}]")
        feasible = np.array([not r for r in reasons], dtype=bool)
        return feasible, ["; ".join(r) for r in reasons], similarity

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "reference_name": self.reference_name,
            "min_similarity": self.min_similarity,
            "alerts": list(self.alerts) if self.alerts else None,
            "ranges": {k: list(v) for k, v in self.ranges.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Constraints:
        return cls(
            reference=data.get("reference"),
            reference_name=data.get("reference_name"),
            min_similarity=data.get("min_similarity"),
            alerts=data.get("alerts"),
            ranges={k: (float(v[0]), float(v[1])) for k, v in (data.get("ranges") or {}).items()},
        )
