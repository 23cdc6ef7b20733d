"""The files of an optimization run folder, and how a killed run is picked up again.

One run lives in an output directory::

    config.json      the run's configuration (objectives, budget, method, seed, ...)
    evaluations.csv  every proposal in order (scored rows carry the oracle call index),
                     rewritten atomically after every round
    state.json       round, counters, trust region: what --resume needs besides the table
    run_info.json    package versions, platform and git commit of the start and of each resume
    best.csv         top-k unique feasible molecules
    best.sdf         the same, as an SD file (2D molecules, the columns as data fields)
    pareto.csv       the feasible Pareto front (several objectives)
    progress.png     best-so-far and top-10 mean vs oracle calls
    best.png         grid picture of the best molecules

    scores.jsonl     every objective value, appended and fsynced the moment it is computed

A killed run resumes from evaluations.csv (molecules are re-encoded) and
state.json. state.json is the commit point: it is written after
evaluations.csv and records how many of its rows belong to finished rounds, so
rows of a round the kill interrupted are dropped and the round is redone.
Scores that round already paid for are read back from scores.jsonl, so the
objective never sees a molecule twice. Rounds are seeded by (seed, round), so a
resumed run continues exactly as the uninterrupted one would have.

``RunStore`` reads and writes the run's own files (config.json, evaluations.csv,
state.json, run_info.json; the oracle appends to scores.jsonl); the reports are
:mod:`molvae.optimization.report`'s.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from molvae.checkpoint import atomic_write_text, environment_info, read_json, write_json
from molvae.errors import MolvaeError
from molvae.folders import CONFIG_FILE, EVALUATIONS_FILE, JOURNAL_FILE, RUN_INFO_FILE, STATE_FILE

if TYPE_CHECKING:
    from molvae.optimization.optimizer import Optimizer
    from molvae.optimization.oracle import Oracle

log = logging.getLogger(__name__)

__all__ = [
    "STATE_VERSION",
    "RunStore",
    "check_new_run_dir",
    "model_identity",
    "read_run_config",
    "read_state",
    "run_objectives",
]

STATE_VERSION = 1


def read_state(path: Path) -> dict[str, Any]:
    """A run's state.json; one written by a newer molvae (a higher ``version``) is refused, not misread."""
    state = read_json(path, "optimization state")
    if not isinstance(state, dict):
        raise MolvaeError(f"{path}: not an optimization state (a JSON object is expected)")
    if isinstance(state.get("version"), int) and state["version"] > STATE_VERSION:
        raise MolvaeError(
            f"{path} was written by a newer molvae (state version {state['version']}, this one reads "
            f"up to {STATE_VERSION}); resume it with that version"
        )
    if not isinstance(state.get("n_records"), int):
        raise MolvaeError(f"{path}: not an optimization state (no commit point, n_records)")
    return state


def read_run_config(folder: Path) -> Any:
    """The parsed config.json of the run in ``folder``."""
    return read_json(folder / CONFIG_FILE, "optimization config")


def check_new_run_dir(out: Path) -> None:
    """A one-line error if ``out`` holds an optimization run, or the scores an interrupted one paid for: a new
    run there would replace them."""
    if (out / EVALUATIONS_FILE).exists():
        raise MolvaeError(f"{out} already holds an optimization run; continue it with --resume or choose another --out")
    journal = out / JOURNAL_FILE
    if journal.is_file() and journal.stat().st_size > 0:
        raise MolvaeError(
            f"{out} holds the scores of a run stopped during its initial design ({JOURNAL_FILE}); "
            "continue it with --resume, or choose another --out"
        )


def run_objectives(folder: Path) -> list[str] | None:
    """The objectives of the optimization run in ``folder`` (its config.json), or None where there is none."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        saved = read_json(path, "run config")
    except MolvaeError:
        return None  # not a run's file after all: the score column cannot be traced
    section = saved.get("optimize") if isinstance(saved, dict) else None
    objectives = section.get("objectives") if isinstance(section, dict) else None
    return [str(o) for o in objectives] if isinstance(objectives, list) else None


def model_identity(model) -> dict[str, str] | None:
    """Where a model was loaded from and the SHA-256 of its weights file (None for a model built in memory)."""
    digest = model.weights_sha256()
    return None if digest is None else {"source": str(model.source), "weights_sha256": digest}


class RunStore:
    """The run folder ``out``: its files as they were when the store was opened (what a resume continues from),
    each read once, and the writes that commit a round."""

    def __init__(self, out: Path):
        self.out = out

    @property
    def journal(self) -> Path:
        """scores.jsonl, which the oracle appends to."""
        return self.out / JOURNAL_FILE

    @functools.cached_property
    def saved_config(self) -> dict[str, Any]:
        """config.json as found ({} where there is none)."""
        return read_json(self.out / CONFIG_FILE, "optimization config") if (self.out / CONFIG_FILE).is_file() else {}

    @functools.cached_property
    def saved_state(self) -> dict[str, Any] | None:
        """state.json as found (None where there is none: the run was stopped during its initial design)."""
        return read_state(self.out / STATE_FILE) if (self.out / STATE_FILE).exists() else None

    @functools.cached_property
    def _saved_run_info(self) -> dict[str, Any] | None:
        file = self.out / RUN_INFO_FILE
        return read_json(file, "run info") if file.is_file() else None

    def has_evaluations(self) -> bool:
        """Whether the folder holds an evaluations.csv (a run that saved at least once)."""
        return (self.out / EVALUATIONS_FILE).exists()

    def recorded_prior(self) -> str | None:
        """The prior name a run recorded when it started ("auto" is resolved once, then kept)."""
        recorded = self.saved_config.get("prior")
        return recorded if isinstance(recorded, str) else None

    def start_new(self) -> None:
        """Refuse a folder holding a run (:func:`check_new_run_dir`); clear the empty journal of a run stopped
        before its first score."""
        check_new_run_dir(self.out)
        self.journal.unlink(missing_ok=True)

    def write_config(self, config: dict[str, Any]) -> None:
        """Write config.json: the run's settings and what they resolved to (method, prior, latent size)."""
        write_json(self.out / CONFIG_FILE, config)

    def committed_rows(self) -> pd.DataFrame:
        """evaluations.csv up to the commit point in state.json (none of it without a state.json)."""
        evals = self.out / EVALUATIONS_FILE
        if not evals.exists():
            raise MolvaeError(f"nothing to resume in {self.out}: no evaluations.csv")
        # Scores must read back bit for bit, or the GP (and the run) would drift after a resume:
        # pandas 3 parses floats exactly by default (and deprecates the option); pandas 2 needs round_trip.
        exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
        df = pd.read_csv(evals, keep_default_na=False, na_values=[""], **exact)
        committed = 0 if self.saved_state is None else self.saved_state["n_records"]
        # Rows past the commit point belong to a round a kill interrupted: that round is redone
        # (its scores come back from the journal).
        if len(df) > committed:
            log.info("dropping %d rows of an interrupted round; their scores are reused", len(df) - committed)
        return df.iloc[:committed]

    def restore(self, oracle: Oracle) -> dict[str, Any]:
        """Load the committed rows into ``oracle``; returns what the loop goes on from: ``round``, ``stalled``,
        ``idle``, ``screen_pos``, ``trust_region`` (None: a new one) and ``timings``."""
        oracle.load_records(self.committed_rows())
        state = self.saved_state or {}  # none: the run stopped during its initial design, before any commit
        return {
            "round": int(state.get("round", 0)),
            "stalled": int(state.get("stalled", 0)),
            "idle": int(state.get("idle", 0)),
            "screen_pos": int(state.get("screen_pos", 0)),
            "trust_region": state.get("trust_region") or None,
            "timings": list(state.get("timings", [])),
        }

    @staticmethod
    def state_of(opt: Optimizer) -> dict[str, Any]:
        """What state.json holds (besides the commit point): round, counters, trust region, why the run stopped."""
        oracle = opt.oracle
        return {
            "version": STATE_VERSION,
            "round": opt.round,
            "method": opt.method,
            "calls": oracle.calls,
            "budget": oracle.budget,
            "n_invalid": oracle.n_invalid,
            "n_repeat": oracle.n_repeat,
            "n_infeasible": sum(1 for r in oracle.known_records() if not r["feasible"]),
            "n_unscored": oracle.n_unscored,
            "best": opt.best_value(),
            "stalled": opt.stalled,
            "idle": opt.idle,
            "screen_pos": opt.screen.pos,
            "active_dims": None if opt.active is None else opt.active.nonzero().flatten().tolist(),
            "trust_region": opt.tr.to_dict(),
            "finished": opt.finished,
            "stop_reason": opt.stop_reason,
            "timings": opt.timings[-50:],
        }

    def commit(self, evaluations: pd.DataFrame, state: dict[str, Any]) -> None:
        """Write evaluations.csv, then state.json (with the row count): the commit point of a round."""
        atomic_write_text(self.out / EVALUATIONS_FILE, evaluations.to_csv(index=False))
        write_json(self.out / STATE_FILE, {**state, "n_records": len(evaluations)})

    def check_same_model(self, identity: dict[str, str] | None) -> None:
        """A resumed run must decode with the model it started with: codes of one model mean nothing to another."""
        started = (self._saved_run_info or {}).get("model")
        if not started or not identity:
            return  # a run started, or resumed, with a model built in memory: nothing to compare
        if started["weights_sha256"] != identity["weights_sha256"]:
            raise MolvaeError(
                f"{self.out} was started with the model in {started['source']} (other weights than "
                f"{identity['source']}); resume it with that model (--model)"
            )

    def record_environment(self, identity: dict[str, str] | None, round: int, resume: bool) -> None:
        """run_info.json: the environment of the start, plus one entry per resume.

        A run is reproducible on CPU for fixed package versions; BoTorch, gpytorch or torch of
        another version can propose other points from the same data, so a resume under other
        versions is said out loud rather than discovered as a mysterious divergence.
        """
        file = self.out / RUN_INFO_FILE
        here = environment_info()
        info = self._saved_run_info
        if not resume or info is None:
            write_json(file, {**here, "model": identity, "resumes": []})
            return
        changed = {
            k: (v, here["versions"].get(k))
            for k, v in (info.get("versions") or {}).items()
            if here["versions"].get(k) != v
        }
        if changed:
            log.warning(
                "%s was started with other package versions (%s): rounds from here on may differ from "
                "an uninterrupted run",
                self.out,
                ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(changed.items())),
            )
        info = {**info, "resumes": [*info.get("resumes", []), {"round": round, **here}]}
        write_json(file, info)
