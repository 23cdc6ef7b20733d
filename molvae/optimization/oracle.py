"""The oracle: budgeted, cached scoring of molecules with a run's objectives and constraints.

Scores are cached by canonical SMILES; every new valid molecule scored costs one oracle call
out of the budget, and invalid decodes and repeats cost nothing but are counted. A molecule
that fails a constraint is recorded as infeasible, with the reason, and costs no call
(``score_infeasible=True`` scores and charges it as well).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from molvae import chemistry
from molvae.errors import ObjectiveError
from molvae.optimization.constraints import Constraints
from molvae.optimization.journal import ScoreJournal
from molvae.optimization.objectives import Objective, call_size

__all__ = ["PROPERTY_COLUMNS", "Oracle"]

# Properties recorded for every scored molecule.
PROPERTY_COLUMNS: tuple[str, ...] = ("mw", "logp", "tpsa", "qed", "sa", "esol")


class Oracle:
    """Budgeted, cached scoring of molecules with one or more objectives.

    Every molecule passed to :meth:`evaluate` becomes one record (a dict, in
    order): ``status`` is ``scored`` (a new valid molecule: costs one call and
    gets the next ``call`` index), ``supplied`` (score given, e.g. by an
    ``--init`` file: no call), ``repeat`` (already known, or twice in the
    batch: not scored, no call) or ``invalid`` (no valid molecule: no call).
    New molecules beyond the remaining budget are dropped without a record.

    With a ``journal`` file (a :class:`~molvae.optimization.journal.ScoreJournal`), every score
    is appended to it as soon as the objective returns, before any other bookkeeping. A run
    killed after scoring but before its records reached the disk reuses those scores on resume
    (:meth:`load_journal`) instead of calling the objective again.
    """

    STATUSES = ("scored", "supplied", "repeat", "invalid", "infeasible")
    KNOWN = ("scored", "supplied", "infeasible")  # a distinct valid molecule the run has seen
    SCORED = ("scored", "supplied")  # a molecule with scores (paid for, or from an --init file)

    def __init__(
        self,
        objectives: Sequence[Objective],
        budget: int,
        constraints: Constraints | None = None,
        journal: str | Path | None = None,
        score_infeasible: bool = False,
    ):
        if budget < 0:
            raise ObjectiveError(f"budget must be >= 0, got {budget}")
        self.objectives = list(objectives)
        if not self.objectives:
            raise ObjectiveError("at least one objective is needed")
        self.budget = int(budget)
        self.constraints = constraints or Constraints()
        self.records: list[dict[str, Any]] = []
        self.known: dict[str, int] = {}  # canonical SMILES -> record index
        self.calls = 0
        self.n_invalid = 0
        self.n_repeat = 0
        self.n_unscored = 0  # infeasible molecules recorded without an oracle call
        self.score_infeasible = bool(score_infeasible)
        self.journal = ScoreJournal(journal) if journal is not None else None
        self.score_cache: dict[
            str, np.ndarray
        ] = {}  # canonical SMILES -> scores already paid for (this process or the journal)

    # ---- columns
    @property
    def score_columns(self) -> list[str]:
        if len(self.objectives) == 1:
            return ["score"]
        return [f"score_{o.key}" for o in self.objectives]

    @property
    def columns(self) -> list[str]:
        return [
            "call",
            "round",
            "source",
            "status",
            "smiles",
            *self.score_columns,
            "valid",
            "feasible",
            "reason",
            "similarity",
            *PROPERTY_COLUMNS,
        ]

    @property
    def remaining(self) -> int:
        return self.budget - self.calls

    # ---- scoring
    def evaluate(self, smiles: Sequence[str | None], round: int, source: str) -> list[dict[str, Any]]:
        """Score the new valid feasible molecules among ``smiles`` (within the budget); return the new records."""
        rows: list[dict[str, Any] | str] = []
        seen_now: set[str] = set()
        for s in smiles:
            canonical = self._classify(s, round, source, seen_now, rows)
            if canonical is not None:
                seen_now.add(canonical)
                rows.append(canonical)  # placeholder, resolved below in order
        candidates = [r for r in rows if isinstance(r, str)]
        checks = dict(zip(candidates, zip(*self._assess(candidates)))) if candidates else {}
        kept: list[dict[str, Any] | None] = []
        new: list[str] = []
        for row in rows:
            if isinstance(row, str):
                feasible, reason, similarity, props = checks[row]
                if not feasible and not self.score_infeasible:
                    self.n_unscored += 1
                    row = self._row(
                        None, round, source, "infeasible", smiles=row, reason=reason, similarity=similarity, props=props
                    )
                elif len(new) < self.remaining:
                    new.append(row)
                    row = None  # filled with its score below
                else:
                    continue  # beyond the budget: no record, so a resume with a larger budget can score it
            kept.append(row)
        scores = self._score(new)
        return self._fill(kept, new, scores, round, source, "scored", checks)

    def add_supplied(
        self, smiles: Sequence[str], scores: np.ndarray, round: int = 0, source: str = "init-file"
    ) -> list[dict[str, Any]]:
        """Record molecules whose scores are given (no oracle call); invalid and repeated ones are counted."""
        scores = np.asarray(scores, dtype=np.float64).reshape(len(smiles), len(self.objectives))
        rows: list[dict[str, Any] | None] = []
        new, new_scores, seen_now = [], [], set()
        for s, sc in zip(smiles, scores):
            canonical = self._classify(s, round, source, seen_now, rows)
            if canonical is not None:
                seen_now.add(canonical)
                new.append(canonical)
                new_scores.append(sc)
                rows.append(None)
        return self._fill(
            rows, new, np.asarray(new_scores).reshape(len(new), len(self.objectives)), round, source, "supplied"
        )

    def _classify(self, s: str | None, round: int, source: str, seen_now: set[str], rows: list) -> str | None:
        """Canonical SMILES of a new molecule; invalid ones and repeats are counted and recorded in ``rows``."""
        canonical = chemistry.canonicalize(s) if isinstance(s, str) and s else None
        if canonical is None:
            self.n_invalid += 1
            rows.append(self._row(None, round, source, "invalid", smiles=s or ""))
            return None
        if canonical in self.known or canonical in seen_now:
            self.n_repeat += 1
            rows.append(self._row(None, round, source, "repeat", smiles=canonical))
            return None
        return canonical

    def _score(self, smiles: list[str]) -> np.ndarray:
        if not smiles:
            return np.empty((0, len(self.objectives)))
        todo = [s for s in smiles if s not in self.score_cache]
        step = call_size(self.objectives) or max(len(todo), 1)
        for start in range(0, len(todo), step):  # journaled call by call: a kill loses at most one call's scores
            part = todo[start : start + step]
            fresh = np.stack([obj(part) for obj in self.objectives], axis=1)
            if self.journal is not None:
                self.journal.append(part, fresh)
            self.score_cache.update(zip(part, fresh))
        return np.stack([self.score_cache[s] for s in smiles])

    # ---- score journal
    def load_journal(self) -> int:
        """Read the scores a previous (killed) process already paid for; returns how many were read."""
        if self.journal is not None:
            self.score_cache.update(self.journal.read(len(self.objectives)))
        return len(self.score_cache)

    def _assess(self, smiles: list[str]) -> tuple[list[bool], list[str], list[float], list[dict[str, float]]]:
        """Per molecule: feasible, reason, similarity to the reference, and the report's properties."""
        table = chemistry.property_table(smiles, list(PROPERTY_COLUMNS), n_jobs=1)
        props = {p: table[p].to_numpy() for p in PROPERTY_COLUMNS}
        feasible, reasons, similarity = self.constraints.check(smiles, props)
        per_row = [{p: props[p][i] for p in props} for i in range(len(smiles))]
        return [bool(f) for f in feasible], list(reasons), [float(v) for v in similarity], per_row

    def _fill(
        self,
        rows: list,
        new: list[str],
        scores: np.ndarray,
        round: int,
        source: str,
        status: str,
        checks: dict[str, tuple] | None = None,
    ) -> list[dict[str, Any]]:
        if new and checks is None:
            checks = dict(zip(new, zip(*self._assess(new))))
        it = iter(range(len(new)))
        out = []
        for row in rows:
            if row is None:
                i = next(it)
                call = None
                if status == "scored":
                    self.calls += 1
                    call = self.calls
                ok, reason, similarity, props = checks[new[i]]
                if not np.all(np.isfinite(scores[i])):
                    ok = False
                    nan = np.isnan(scores[i]).any()
                    if status == "supplied":
                        why = "no score given in the --init file" if nan else "the --init file gives an infinite score"
                    else:
                        why = f"objective returned {'NaN' if nan else 'an infinite value'}"
                    reason = "; ".join(r for r in (reason, why) if r)
                row = self._row(
                    call,
                    round,
                    source,
                    status,
                    smiles=new[i],
                    scores=scores[i],
                    feasible=ok,
                    reason=reason,
                    similarity=similarity,
                    props=props,
                )
            if row["status"] in self.KNOWN:
                self.known[row["smiles"]] = len(self.records)
            self.records.append(row)
            out.append(row)
        return out

    def _row(
        self, call, round, source, status, smiles, scores=None, feasible=False, reason="", similarity=np.nan, props=None
    ) -> dict[str, Any]:
        row: dict[str, Any] = {"call": call, "round": round, "source": source, "status": status, "smiles": smiles}
        for j, col in enumerate(self.score_columns):
            row[col] = float(scores[j]) if scores is not None else np.nan
        if status == "repeat" and smiles in self.known:
            # Report the cached score so a repeat can be read on its own (it cost nothing).
            known = self.records[self.known[smiles]]
            for col in self.score_columns:
                row[col] = known[col]
        row.update(
            {
                "valid": status != "invalid",
                "feasible": bool(feasible) if status in self.SCORED else False,
                "reason": reason if status in self.KNOWN else status,
                "similarity": float(similarity),
            }
        )
        for p in PROPERTY_COLUMNS:
            row[p] = float((props or {}).get(p, np.nan))
        return row

    # ---- persistence
    def dataframe(self) -> pd.DataFrame:
        df = pd.DataFrame(self.records, columns=self.columns)
        df["call"] = df["call"].astype("Int64")
        return df

    def load_records(self, df: pd.DataFrame) -> None:
        """Restore the accounting from an ``evaluations.csv`` table (for resuming)."""
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise ObjectiveError(f"evaluations table lacks columns {missing} (objectives changed since the run began?)")
        self.records, self.known = [], {}
        self.calls = self.n_invalid = self.n_repeat = self.n_unscored = 0
        for rec in df[self.columns].to_dict("records"):
            rec = {
                k: (None if k == "call" and (v is None or (isinstance(v, float) and math.isnan(v))) else v)
                for k, v in rec.items()
            }
            if rec["call"] is not None:
                rec["call"] = int(rec["call"])
            rec["reason"] = "" if not isinstance(rec["reason"], str) else rec["reason"]
            status = rec["status"]
            if status in self.KNOWN:
                self.known[rec["smiles"]] = len(self.records)
            if status == "scored":
                self.calls += 1
            elif status == "invalid":
                self.n_invalid += 1
            elif status == "repeat":
                self.n_repeat += 1
            elif status == "infeasible":
                self.n_unscored += 1
            self.records.append(rec)

    def scored_records(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] in self.SCORED]

    def known_records(self) -> list[dict[str, Any]]:
        """Every distinct valid molecule of the run: scored, supplied, and infeasible ones not scored."""
        return [r for r in self.records if r["status"] in self.KNOWN]
