"""The oracle: budgeted, cached scoring of molecules with a run's objectives and constraints.

Scores are cached by canonical SMILES; every new valid molecule scored costs one oracle call
out of the budget, and invalid decodes and repeats cost nothing but are counted. A molecule
that fails a constraint is recorded as infeasible, with the reason, and costs no call
(``score_infeasible=True`` scores and charges it as well).
"""

from __future__ import annotations

from collections import Counter
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
from molvae.optimization.records import (
    KNOWN,
    PROPERTY_COLUMNS,
    SCORED,
    STATUSES,
    make_record,
    nonfinite_reason,
    record_columns,
    records_from_table,
    records_table,
    score_columns,
)

__all__ = ["PROPERTY_COLUMNS", "Oracle"]


class Oracle:
    """Budgeted, cached scoring of molecules with one or more objectives.

    Every molecule passed to :meth:`evaluate` becomes one record (a dict, in
    order): ``status`` is ``scored`` (a new valid molecule: costs one call and
    gets the next ``call`` index), ``supplied`` (score given, e.g. by an
    ``--init`` file: no call), ``repeat`` (already known, or twice in the
    batch: not scored, no call) or ``invalid`` (no valid molecule: no call).
    New molecules beyond the remaining budget are dropped without a record.

    With a ``journal`` file (a ``molvae.optimization.journal.ScoreJournal``), every score
    is appended to it as soon as the objective returns, before any other bookkeeping. A run
    killed after scoring but before its records reached the disk reuses those scores on resume
    (:meth:`load_journal`) instead of calling the objective again.
    """

    STATUSES = STATUSES
    KNOWN = KNOWN  # a distinct valid molecule the run has seen
    SCORED = SCORED  # a molecule with scores (paid for, or from an --init file)

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
        # canonical SMILES -> scores already paid for (this process or the journal)
        self.score_cache: dict[str, np.ndarray] = {}

    # ---- columns
    @property
    def score_columns(self) -> list[str]:
        """``score`` with one objective, ``score_<key>`` per objective with several."""
        return score_columns([o.key for o in self.objectives])

    @property
    def columns(self) -> list[str]:
        """The columns of a record and of the evaluations table, in order."""
        return record_columns(self.score_columns)

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
            # The cached score, so a repeat can be read on its own (it cost nothing).
            known = self.records[self.known[canonical]] if canonical in self.known else None
            values = [known[c] for c in self.score_columns] if known is not None else None
            rows.append(self._row(None, round, source, "repeat", smiles=canonical, scores=values))
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
                    reason = "; ".join(r for r in (reason, nonfinite_reason(scores[i], status)) if r)
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

    def _row(self, call, round, source, status, smiles, scores=None, **fields: Any) -> dict[str, Any]:
        """A record with this oracle's score columns (:func:`~molvae.optimization.records.make_record`)."""
        return make_record(self.score_columns, call, round, source, status, smiles, scores, **fields)

    # ---- persistence
    def dataframe(self) -> pd.DataFrame:
        """The records as the evaluations table (what evaluations.csv holds)."""
        return records_table(self.records, self.columns)

    def load_records(self, df: pd.DataFrame) -> None:
        """Restore the records and the accounting from an ``evaluations.csv`` table (for resuming)."""
        self.records = records_from_table(df, self.columns)
        self.known = {r["smiles"]: i for i, r in enumerate(self.records) if r["status"] in self.KNOWN}
        counts = Counter(r["status"] for r in self.records)
        self.calls, self.n_invalid = counts["scored"], counts["invalid"]
        self.n_repeat, self.n_unscored = counts["repeat"], counts["infeasible"]

    def scored_records(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] in self.SCORED]

    def known_records(self) -> list[dict[str, Any]]:
        """Every distinct valid molecule of the run: scored, supplied, and infeasible ones not scored."""
        return [r for r in self.records if r["status"] in self.KNOWN]
