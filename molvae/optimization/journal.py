"""The score journal: every score an optimization run paid for, on disk before anything else.

One JSON line per molecule (``{"smiles": ..., "scores": [...]}``), appended and fsynced as soon
as the objective returns, so a run killed before its records reached ``evaluations.csv``
reuses those scores on resume instead of calling the objective again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from molvae.errors import ObjectiveError

__all__ = ["ScoreJournal"]


class ScoreJournal:
    """Append-only file of scores by canonical SMILES."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, smiles: Sequence[str], scores: np.ndarray) -> None:
        """Add one call's scores (one row per molecule) and fsync them."""
        lines = "".join(
            json.dumps({"smiles": s, "scores": [float(v) for v in row]}) + "\n" for s, row in zip(smiles, scores)
        )
        # One write plus fsync per call: a kill leaves at most a torn last line, which read() drops.
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())

    def read(self, n_objectives: int) -> dict[str, np.ndarray]:
        """Scores by SMILES (a later line for a molecule wins); nothing if the file does not exist.

        A torn last line (the process was killed mid-write) is cut off the file so later
        appends start on a fresh line.
        """
        if not self.path.is_file():
            return {}
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
        scores: dict[str, np.ndarray] = {}
        for lineno, line in enumerate(data[:end].decode("utf-8").splitlines(), start=1):
            smiles, row = self._parse(line, lineno, n_objectives)
            scores[smiles] = row
        return scores

    def _parse(self, line: str, lineno: int, n_objectives: int) -> tuple[str, np.ndarray]:
        try:
            entry = json.loads(line)
            return str(entry["smiles"]), np.asarray(entry["scores"], dtype=np.float64).reshape(n_objectives)
        except (ValueError, KeyError, TypeError) as exc:
            raise ObjectiveError(
                f"{self.path}, line {lineno}: unreadable score record ({exc}); "
                "the objectives may have changed since the run began"
            ) from None
