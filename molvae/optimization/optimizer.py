"""Latent-space Bayesian optimization: GP + acquisition (+ trust region), decode, score, repeat.

:class:`Optimizer` is the loop; what it draws on lives beside it: the settings and the resume
rules (:mod:`~molvae.optimization.config`), the run folder's files (:mod:`~molvae.optimization.store`,
whose docstring describes them), the initial designs (:mod:`~molvae.optimization.designs`), each
round's proposals (:mod:`~molvae.optimization.proposers`), the GP (:mod:`~molvae.optimization.gp`)
and the searched dimensions (:mod:`~molvae.optimization.subspace`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from molvae.checkpoint import RunLock, lock_run_dir
from molvae.folders import CONFIG_FILE
from molvae.optimization import report
from molvae.optimization.config import OptimizeConfig, resolve_method, resume_config
from molvae.optimization.constraints import Constraints
from molvae.optimization.density import check_density_prior, data_density
from molvae.optimization.designs import initial_design
from molvae.optimization.gp import GPData, TrustRegion, encode_new, gp_data
from molvae.optimization.objectives import Objective, _split_top_level, parse_objectives
from molvae.optimization.oracle import Oracle
from molvae.optimization.proposers import (
    ScreenPool,
    gp_codes,
    is_local_round,
    local_molecules,
    round_seed,
    subspace_codes,
)
from molvae.optimization.stopping import log_early_stop, stop_reason
from molvae.optimization.store import RunStore, model_identity
from molvae.optimization.subspace import search_mask
from molvae.tables import check_output_dir

log = logging.getLogger(__name__)

__all__ = ["Optimizer", "optimize"]


class Optimizer:
    """One optimization run in ``out`` (its files: :mod:`molvae.optimization.store`)."""

    def __init__(
        self,
        model,
        config: OptimizeConfig,
        out: str | Path,
        objectives: list[Objective] | None = None,
        resume: bool = False,
        progress: bool | None = None,
    ):
        self.model = model
        self.out = Path(out)
        self.config = config.validate()
        self.objectives = objectives if objectives is not None else parse_objectives(config.objectives)
        self.constraints = Constraints.from_dict(config.constraints) if config.constraints else Constraints()
        self.store = RunStore(self.out)
        self.oracle = Oracle(
            self.objectives,
            config.budget,
            self.constraints,
            journal=self.store.journal,
            score_infeasible=config.score_infeasible,
        )
        check_output_dir(self.out, create=True)  # never a model's directory: config.json would replace its own
        # Held for this object's life: a second process resuming the same run would interleave its rows.
        self._lock: RunLock | None = lock_run_dir(self.out)
        self.model_identity = model_identity(model)
        if resume:
            self.store.check_same_model(self.model_identity)
        recorded = self.store.recorded_prior() if resume and config.prior == "auto" else None
        self.prior = model.prior(recorded or config.prior)
        self.method = resolve_method(config.method, model.config.latent_dim, len(self.objectives))
        if config.density_weight > 0 and self.method in ("bo", "turbo"):
            check_density_prior(self.prior)
        self.progress = progress
        self.round = 0
        self.stalled = 0  # rounds in a row that scored nothing (the patience count)
        self.idle = 0  # rounds in a row that found no new molecule at all, feasible or not
        self.screen = ScreenPool(config.seed)
        self.timings: list[dict[str, float]] = []
        # Boolean mask of the latent dimensions BO searches (None: all of them).
        self.active: torch.Tensor | None = None
        self.latents: dict[str, np.ndarray] = {}  # canonical SMILES -> code of the molecule actually scored
        self.initialized = False  # True once the initial design is committed (state.json written)
        if config.subspace != "full" and self.method in ("bo", "turbo"):
            self.active = search_mask(model, config.subspace, self.store.saved_state if resume else None)
        self.tr = TrustRegion(dim=self.search_dim, batch=config.batch, failure_tolerance=config.tr_failure_tolerance)
        if resume:
            self.oracle.load_journal()
            if self.store.has_evaluations():
                self._load()
        else:
            self.store.start_new()
        resolved = {"method": self.method, "prior": self.prior.name, "latent_dim": model.config.latent_dim}
        self.store.write_config({"optimize": asdict(self.config), **resolved})
        self.store.record_environment(self.model_identity, self.round, resume)

    @property
    def search_dim(self) -> int:
        """The dimensions GP and acquisition work in: the active ones unless ``subspace`` is (or fell back to) full."""
        return self.model.config.latent_dim if self.active is None else int(self.active.sum())

    # ---- persistence (:class:`~molvae.optimization.store.RunStore`)
    def _load(self) -> None:
        """Pick the run up at its last committed round."""
        saved = self.store.restore(self.oracle)
        self.initialized = self.store.saved_state is not None
        self.round, self.stalled, self.idle = saved["round"], saved["stalled"], saved["idle"]
        self.screen.pos, self.timings = saved["screen_pos"], saved["timings"]
        if saved["trust_region"]:
            self.tr = TrustRegion(**saved["trust_region"])
        self._encode_new(self.oracle.known_records())
        log.info(
            "resuming %s at round %d: %d oracle calls used of %d",
            self.out,
            self.round,
            self.oracle.calls,
            self.oracle.budget,
        )

    def save(self) -> None:
        """Write evaluations.csv, then state.json: the commit point of everything up to this round."""
        self.store.commit(self.oracle.dataframe(), self.state())
        self.initialized = True

    def state(self) -> dict[str, Any]:
        """What state.json holds (besides the commit point): round, counters, trust region, why the run stopped."""
        return self.store.state_of(self)

    @property
    def finished(self) -> bool:
        """Whether a stopping rule has been met (:attr:`stop_reason`)."""
        return self.stop_reason is not None

    @property
    def stop_reason(self) -> str | None:
        """Why the run stops (``"budget"``, ``"patience"`` or ``"max_rounds"``), or None while it goes on."""
        return stop_reason(self.config, self.oracle.remaining, self.stalled, self.round)

    # ---- data for the GP
    def _encode_new(self, records: list[dict[str, Any]]) -> None:
        """Encode the distinct valid molecules among oracle records (:func:`~molvae.optimization.gp.encode_new`)."""
        encode_new(self.model, records, self.latents)

    def training_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(X, Y) in float64: the codes of known molecules and their scores (infeasible ones at the worst value)."""
        data = self._gp_data()
        return data.X, data.Y

    def _gp_data(self) -> GPData:
        return gp_data(
            self.oracle.known_records(),
            self.latents,
            self.oracle.score_columns,
            self.model.config.latent_dim,
            self.config.gp_window,
        )

    def best_value(self) -> float | None:
        """The best feasible score so far (one objective; None with several, or before any)."""
        vals = [r[self.oracle.score_columns[0]] for r in self.oracle.scored_records() if r["feasible"]]
        return float(max(vals)) if vals and len(self.objectives) == 1 else None

    # ---- rounds
    def initial_design(self) -> None:
        """Score the initial design (:mod:`molvae.optimization.designs`) and commit it."""
        self._encode_new(
            initial_design(self.model, self.oracle, self.config, self.method, self.constraints, self.objectives)
        )
        self.save()

    def step(self) -> list[dict[str, Any]]:
        """One round: propose, decode, score, update the counters and the trust region, commit."""
        with _torch_threads(self.config.threads):
            return self._step()

    def _step(self) -> list[dict[str, Any]]:
        self.round += 1
        seed = round_seed(self.config.seed, self.round)
        torch.manual_seed(seed)
        q = min(self.config.batch, max(self.oracle.remaining, 1))
        t0 = time.perf_counter()
        timing = {"round": self.round, "fit": 0.0, "acquisition": 0.0, "decode": 0.0, "score": 0.0}
        before = self.best_value()
        source, smiles = self._molecules(q, seed, timing)
        t = time.perf_counter()
        rows = self.oracle.evaluate(smiles, round=self.round, source=source)
        timing["score"] = time.perf_counter() - t
        self._encode_new(rows)
        after = self.best_value()
        if self.method == "turbo":
            self.tr.update(after is not None and (before is None or after > before + 1e-3 * abs(before)))
        self.stalled = 0 if any(r["status"] == "scored" for r in rows) else self.stalled + 1
        self.idle = 0 if any(r["status"] in Oracle.KNOWN for r in rows) else self.idle + 1
        timing["total"] = time.perf_counter() - t0
        self.timings.append(timing)
        self.save()
        return rows

    def _molecules(self, q: int, seed: int, timing: dict[str, float]) -> tuple[str, list[str | None]]:
        """The round's source (evaluations.csv) and its molecules (None: a code that decoded to nothing valid)."""
        if self.method == "screen":
            return "screen", self.screen.take(q)
        t = time.perf_counter()
        if is_local_round(self.config, self.method, self.stalled, self.constraints, len(self.objectives)):
            smiles = local_molecules(
                self.model, self.oracle, self.latents, self.constraints, self.config.init_radius, q, seed
            )
            timing["decode"] = time.perf_counter() - t
            return "local", smiles
        if self.method == "prior":
            z = torch.from_numpy(self.prior.sample(q, seed=seed))
        else:
            z = self._propose(q, timing)
        t = time.perf_counter()
        smiles = self.model.decode_valid(
            z.float().numpy(),
            attempts=self.config.decode_attempts,
            temperature=self.config.decode_temperature,
            seed=seed,
        )
        timing["decode"] = time.perf_counter() - t
        return self.method, smiles

    def _propose(self, q: int, timing: dict[str, float]) -> torch.Tensor:
        """``q`` codes from the GP and the acquisition (from the prior while there is nothing to model)."""
        data = self._gp_data()
        if len(data.X) < 2:
            return torch.from_numpy(self.prior.sample(q, seed=round_seed(self.config.seed, self.round))).double()
        density = (
            data_density(self.prior, data.X, self.config.density_quantile, self.active)
            if self.config.density_weight > 0
            else None
        )
        return subspace_codes(
            data,
            q,
            self.active,
            lambda sub: gp_codes(
                sub, q, self.config, self.constraints, self.method, self.tr, self.idle, timing, density
            ),
        )

    # ---- driving the run
    def run(self) -> Optimizer:
        """Run to the end (initial design first, unless done), then write the reports; returns ``self``."""
        if self._lock is None:  # run() again after an earlier run() released it
            self._lock = lock_run_dir(self.out)
        try:
            return self._run()
        finally:
            # Not left to garbage collection: another process may resume this run as soon as run returns.
            self._lock.release()
            self._lock = None

    def _run(self) -> Optimizer:
        if not self.initialized:
            self.initial_design()
        bar = _progress_bar(self.oracle, self.method, self.progress)
        try:
            while not self.finished:
                rows = self.step()
                bar.update(sum(r["status"] == "scored" for r in rows))
                best = self.best_value()
                bar.set_postfix(round=self.round, best=f"{best:.3f}" if best is not None else "-")
        finally:
            bar.close()
        # Not in the finally: a round an exception cut short must stay uncommitted (it is
        # redone on --resume), and every finished round has already been saved.
        self.save()
        if self.oracle.scored_records():
            self.write_reports()
        log_early_stop(self.stop_reason, self.stalled, self.round, self.oracle.calls, self.oracle.budget)
        return self

    # ---- reports
    def feasible_table(self) -> pd.DataFrame:
        """The evaluations that have scores and meet the constraints."""
        return report.feasible_rows(self.oracle.dataframe())

    def write_reports(self, baselines: dict[str, pd.DataFrame] | None = None) -> None:
        """best.csv, best.sdf, pareto.csv, progress.png and best.png
        (``molvae.optimization.report.write_reports``)."""
        labels = [o.description or o.name for o in self.objectives]
        df, columns = self.oracle.dataframe(), self.oracle.score_columns
        report.write_reports(self.out, df, columns, self.config.top_k, labels, baselines=baselines)


def _progress_bar(oracle: Oracle, method: str, progress: bool | None) -> tqdm:
    """A bar of oracle calls (``progress`` None: shown on a terminal only)."""
    disable = None if progress is None else not progress
    return tqdm(total=oracle.budget, initial=oracle.calls, disable=disable, desc=f"optimize ({method})", unit="call")


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def optimize(
    model,
    objectives: str | list[str],
    out: str | Path,
    resume: bool = False,
    progress: bool | None = False,
    **options: Any,
) -> Optimizer:
    """Run (or resume) an optimization; returns the finished :class:`Optimizer`.

    A resume keeps the run's settings: options other than ``budget`` and ``max_rounds`` must match
    them (``molvae.optimization.config.resume_config``).

    >>> opt = optimize(model, "qed", "runs/qed", budget=200, batch=10, seed=1)
    >>> opt.feasible_table().sort_values("score").tail()
    """
    specs = [objectives] if isinstance(objectives, str) and "," not in objectives else objectives
    if isinstance(specs, str):
        specs = _split_top_level(specs, ",")
    config = OptimizeConfig.from_dict({"objectives": list(specs), **options})
    if resume and (Path(out) / CONFIG_FILE).exists():
        config = resume_config(out, {**options, "objectives": config.objectives})
    return Optimizer(model, config, out, resume=resume, progress=progress).run()
