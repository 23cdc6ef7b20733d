"""Latent-space Bayesian optimization: GP + acquisition (+ trust region), decode, score, repeat.

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

Under a similarity constraint (lead optimization), TuRBO's region is sized by the box of
the feasible codes rather than of all of them (:func:`trust_region_box`).

Molecules that fail a constraint are not scored (see :class:`Oracle`), but their codes
join the GP's data at the worst score, so the search learns where the constraint bites.
When the GP's proposals under a similarity constraint keep decoding to nothing new and
feasible, every ``local_after``-th such round decodes around the best feasible codes
instead (source ``local`` in evaluations.csv; :meth:`Optimizer._local_batch`).
"""

from __future__ import annotations

import functools
import logging
import math
import time
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from molvae.checkpoint import RunLock, atomic_write_text, environment_info, lock_run_dir, read_json, write_json
from molvae.config import config_from_dict, rule, validate_config
from molvae.errors import ConfigError, MolvaeError
from molvae.folders import (
    BEST_FILE,
    BEST_PLOT,
    BEST_SDF,
    CONFIG_FILE,
    EVALUATIONS_FILE,
    JOURNAL_FILE,
    PARETO_FILE,
    PROGRESS_PLOT,
    RUN_INFO_FILE,
    STATE_FILE,
)
from molvae.optimization.acquisition import ACQUISITIONS, propose_latents
from molvae.optimization.constraints import Constraints
from molvae.optimization.objectives import BUILTIN_OBJECTIVES, Objective, parse_objectives
from molvae.optimization.oracle import Oracle
from molvae.tables import check_output_dir

log = logging.getLogger(__name__)

__all__ = ["METHODS", "OptimizeConfig", "TrustRegion", "Optimizer", "optimize", "fit_gp", "gp_window_index"]

METHODS = ("auto", "bo", "turbo", "prior", "screen")
SUBSPACES = ("auto", "active", "full")
# MOSES training molecules whose codes decide which latent dimensions are active (--subspace active)
ACTIVE_SAMPLE = 1000
STATE_VERSION = 1


@dataclass
class OptimizeConfig:
    """Everything that defines a run (saved as config.json)."""

    objectives: list[str]
    budget: int = field(default=500, metadata=rule(ge=0))
    batch: int = field(default=10, metadata=rule(ge=1))
    method: str = field(default="auto", metadata=rule(choices=METHODS))  # auto: turbo for latents >= 64 dims, else bo
    acquisition: str = field(default="logei", metadata=rule(choices=tuple(ACQUISITIONS)))
    n_init: int = field(default=100, metadata=rule(ge=0))
    init_file: str | None = None
    init_smiles_column: str | None = None  # the --init table's SMILES column (default: the one named smiles)
    # the initial design draws from a seeded random sample of this many MOSES training molecules
    init_pool: int = field(default=100_000, metadata=rule(ge=1))
    # with a similarity constraint: the initial design is the lead plus molecules decoded at this
    # radius (prior standard deviations) around its code, not random MOSES molecules
    init_radius: float = field(default=0.5, metadata=rule(gt=0.0))
    seed: int = 0
    gp_window: int = field(default=512, metadata=rule(ge=1))
    # failed rounds in a row before the trust region halves; 0: TuRBO's ceil(max(4/q, d/q))
    tr_failure_tolerance: int = field(default=0, metadata=rule(ge=0))
    gp_maxiter: int = field(default=100, metadata=rule(ge=1))  # L-BFGS iterations of each GP fit
    # "active": the GP and the acquisition (bo, turbo) work in the latent dimensions the encoder
    # uses (metrics.active_dimensions over ACTIVE_SAMPLE MOSES training molecules); the others,
    # collapsed to the prior and ignored by the decoder, are held at the data's mean. "full": all.
    # "auto": active, or full with a warning where the active ones cannot be measured (a model of
    # another chemistry) or are all of them. At 500 calls active raised the mean best and top-10
    # on ESOL, QED and penalized logP for bo and turbo, all but turbo's best QED (docs/BO_BENCHMARK.md).
    subspace: str = field(default="auto", metadata=rule(choices=SUBSPACES))
    # latent prior of the prior-sampling rounds (--method prior, --baselines) and of proposals made
    # before there is data to fit: "auto" (the model's default; the name it resolved to when the run
    # started is recorded in config.json, so a resumed run keeps it), "standard" or a stored prior
    prior: str = "auto"
    decode_attempts: int = field(default=5, metadata=rule(ge=1))
    decode_temperature: float = field(default=0.5, metadata=rule(gt=0.0))
    num_restarts: int = field(default=4, metadata=rule(ge=1))
    raw_samples: int = field(default=128, metadata=rule(ge=1))
    ucb_beta: float = field(default=2.0, metadata=rule(ge=0.0))
    ts_candidates: int = field(default=2000, metadata=rule(ge=1))
    acq_maxiter: int = field(default=100, metadata=rule(ge=1))
    # torch threads inside a round (small matrices: 1 avoids oversubscription); None = torch default
    threads: int | None = field(default=1, metadata=rule(ge=1))
    top_k: int = field(default=20, metadata=rule(ge=1))
    patience: int = field(default=20, metadata=rule(ge=1))  # rounds in a row with nothing new scored before giving up
    # rounds after the initial design before stopping, budget left or not (None: no cap). With
    # constraints most proposals may cost no call, so the budget alone does not bound wall time.
    max_rounds: int | None = field(default=None, metadata=rule(ge=1))
    # with a similarity constraint: every time this many rounds in a row have scored nothing, one
    # round decodes around the best feasible molecules instead of asking the GP (None: never)
    local_after: int | None = field(default=5, metadata=rule(ge=1))
    constraints: dict[str, Any] = field(default_factory=dict)
    # with a similarity constraint and qLogEI: a second GP models the similarity and qLogEI takes
    # it as a constraint (candidates chosen one by one); about 10x slower acquisition
    similarity_gp: bool = False
    # spend oracle calls on molecules that fail a constraint (runs before this option did; their
    # scores then appear in evaluations.csv); by default they are recorded, not scored, and cost nothing
    score_infeasible: bool = False

    def validate(self) -> "OptimizeConfig":
        """Check types and ranges (:func:`molvae.config.validate_config`); returns ``self``."""
        validate_config(self, "optimization config")
        if not 1 <= len(self.objectives) <= 3:
            raise ConfigError(f"optimization config: one to three objectives, got {len(self.objectives)}")
        if self.init_smiles_column is not None and self.init_file is None:
            raise ConfigError("optimization config: init_smiles_column (--smiles-column) names a column of the "
                              "init_file (--init), and there is none")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OptimizeConfig":
        """Build from parsed JSON; unknown fields and bad values raise :class:`ConfigError`."""
        return config_from_dict(cls, data, "optimization config").validate()


@dataclass
class TrustRegion:
    """TuRBO-style box around the incumbent: doubles after successes, halves after failures, restarts when tiny."""

    dim: int
    batch: int
    length: float = 0.8
    length_min: float = 0.5**7
    length_max: float = 1.6
    success_tolerance: int = 3
    failure_tolerance: int = 0
    successes: int = 0
    failures: int = 0
    restarts: int = 0

    def __post_init__(self) -> None:
        if self.failure_tolerance <= 0:
            self.failure_tolerance = int(math.ceil(max(4.0 / self.batch, self.dim / self.batch)))

    def update(self, improved: bool) -> None:
        if improved:
            self.successes += 1
            self.failures = 0
        else:
            self.failures += 1
            self.successes = 0
        if self.successes >= self.success_tolerance:
            self.length = min(2.0 * self.length, self.length_max)
            self.successes = 0
        elif self.failures >= self.failure_tolerance:
            self.length /= 2.0
            self.failures = 0
        if self.length < self.length_min:
            self.length = 0.8
            self.restarts += 1
            self.successes = self.failures = 0

    def bounds(self, center: torch.Tensor, lengthscale: torch.Tensor | None, lb: torch.Tensor, ub: torch.Tensor
               ) -> torch.Tensor:
        """Box around ``center`` (raw latent units), widths scaled by the GP lengthscales, inside [lb, ub]."""
        span = ub - lb
        if lengthscale is None:
            weights = torch.ones_like(center)
        else:
            weights = lengthscale / lengthscale.mean()
            weights = weights / torch.prod(weights.pow(1.0 / len(weights)))
        half = self.length / 2.0 * weights * span
        return torch.stack([torch.maximum(center - half, lb), torch.minimum(center + half, ub)])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- GP and acquisition


def gp_window_index(Y: np.ndarray, window: int) -> np.ndarray:
    """Rows (in order) the GP is fit on: all when there are at most ``window``, else the best half
    of the window plus the latest rows, so a round's cost stays flat at thousands of points."""
    n = len(Y)
    if n <= window:
        return np.arange(n)
    rank = Y.sum(axis=1) if Y.shape[1] > 1 else Y[:, 0]
    best = np.argsort(-rank, kind="stable")[: window // 2]
    chosen = set(best.tolist())
    latest = [i for i in range(n - 1, -1, -1) if i not in chosen][: window - len(best)]
    return np.sort(np.concatenate([best, np.array(latest, dtype=int)]))


def fit_gp(X: torch.Tensor, Y: torch.Tensor, bounds: torch.Tensor, maxiter: int | None = 100):
    """SingleTaskGP (Normalize inputs to ``bounds``, Standardize outcomes), hyperparameters by marginal likelihood.

    ``maxiter`` caps the L-BFGS iterations of the hyperparameter fit (None: botorch's default).
    At 512 points in 128 dimensions the uncapped fit took 42 s on 2 cores and the capped one
    3.7 s, for a marginal log likelihood of -0.657 instead of -0.638 (synthetic data; the
    round timing of scripts/bench_bo.py and docs/BO_BENCHMARK.md give the figures in a run).
    """
    from botorch.exceptions import ModelFittingError
    from botorch.exceptions.warnings import InputDataWarning
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    with warnings.catch_warnings():
        # Constant outcomes (e.g. every molecule so far infeasible) make botorch warn each
        # round that Y is not standardized; the GP is then flat, which is the right answer.
        warnings.filterwarnings("ignore", category=InputDataWarning, message=r"Data \(outcome observations\)")
        model = SingleTaskGP(X, Y, input_transform=Normalize(d=X.shape[-1], bounds=bounds),
                             outcome_transform=Standardize(m=Y.shape[-1]))
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        try:
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}} if maxiter else None)
        except ModelFittingError as exc:  # keep the prior hyperparameters: still a usable model
            log.debug("GP fit failed (%s); using default hyperparameters", exc)
    model.eval()
    return model


def _lengthscale(model) -> torch.Tensor | None:
    try:
        ls = model.covar_module.lengthscale
    except AttributeError:
        try:
            ls = model.covar_module.base_kernel.lengthscale
        except AttributeError:
            return None
    ls = ls.detach().reshape(-1)
    return ls if ls.numel() > 1 else None


# --------------------------------------------------------------------------- the run
def read_state(path: Path) -> dict[str, Any]:
    """A run's state.json; one written by a newer molvae (a higher ``version``) is refused, not misread."""
    state = read_json(path, "optimization state")
    if not isinstance(state, dict):
        raise MolvaeError(f"{path}: not an optimization state (a JSON object is expected)")
    if isinstance(state.get("version"), int) and state["version"] > STATE_VERSION:
        raise MolvaeError(f"{path} was written by a newer molvae (state version {state['version']}, this one reads "
                          f"up to {STATE_VERSION}); resume it with that version")
    return state


def check_new_run_dir(out: Path) -> None:
    """A one-line error if ``out`` holds an optimization run, or the scores an interrupted one paid for: a new
    run there would replace them."""
    if (out / EVALUATIONS_FILE).exists():
        raise MolvaeError(f"{out} already holds an optimization run; continue it with --resume or choose another --out")
    journal = out / JOURNAL_FILE
    if journal.is_file() and journal.stat().st_size > 0:
        raise MolvaeError(f"{out} holds the scores of a run stopped during its initial design ({JOURNAL_FILE}); "
                          "continue it with --resume, or choose another --out")


def _run_objectives(folder: Path) -> list[str] | None:
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


def init_score_fields(path: str, fields: Sequence[str], objectives: Sequence[str],
                      columns: Sequence[str]) -> list[str | None]:
    """Per objective, the field of an --init file holding its values, or None (``columns``: the run's score columns).

    A column named as the objective (``qed``, as `molvae properties` writes it) says what
    it holds; ``score_<objective>`` too. A bare ``score`` column holds whatever objective
    the run that wrote it optimized: it is used only where that run's ``config.json``
    beside the file names these objectives, or where there is none to ask.
    """
    owner = _run_objectives(Path(path).parent)
    chosen: list[str | None] = []
    for col, name in zip(columns, objectives):
        if name in fields:
            chosen.append(name)
        elif col not in fields:
            chosen.append(None)
        elif col == "score" and owner is not None and owner != list(objectives):
            raise MolvaeError(f"--init {path}: its score column holds {', '.join(owner)} (the run's config.json "
                              f"says so), not {name}; give a file with a {name!r} column (`molvae properties` "
                              "writes one) or a list of molecules to have them scored")
        else:
            chosen.append(col)
    return chosen


@contextmanager
def _torch_threads(n: int | None):
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def active_latent_dimensions(model) -> np.ndarray:
    """Boolean mask of ``model``'s active latent dimensions (:func:`molvae.metrics.active_dimensions`),
    from the codes of :data:`ACTIVE_SAMPLE` random MOSES training molecules (a fixed sample)."""
    from molvae.metrics import active_dimensions

    z = model.encode(list(_active_sample()), errors="nan")
    n = int(np.isfinite(z).all(axis=1).sum())
    if n < ACTIVE_SAMPLE // 10:
        raise MolvaeError(f"the model encodes only {n} of {ACTIVE_SAMPLE} MOSES training molecules (its vocabulary "
                          "is another chemistry), too few to tell its active latent dimensions")
    mask = active_dimensions(z)
    if not mask.any():
        raise MolvaeError("no latent dimension is active (the posterior ignores the molecule: posterior collapse)")
    return mask


@functools.lru_cache(maxsize=1)
def _active_sample() -> tuple[str, ...]:
    """The fixed MOSES training sample of :func:`active_latent_dimensions`, read once per process
    (a pass over the 1.58M-line file takes seconds)."""
    from molvae.data import moses_file, sample_smiles

    return tuple(sample_smiles(moses_file("train"), ACTIVE_SAMPLE, seed=0, column="SMILES"))


@functools.lru_cache(maxsize=1)
def _moses_train_smiles() -> tuple[str, ...]:
    """The 1.58M MOSES training SMILES, read once per process (screening runs side by side share them)."""
    from molvae.data import moses_file, read_smiles

    return tuple(read_smiles(moses_file("train"), column="SMILES"))


def data_box(X: torch.Tensor, pad: float = 0.1) -> torch.Tensor:
    """[2, D] box spanned by the rows of ``X``, widened on each side by ``pad`` of its width."""
    lo, hi = X.min(0).values, X.max(0).values
    margin = pad * (hi - lo).clamp_min(1e-3)
    return torch.stack([lo - margin, hi + margin])


def feasible_box(X: torch.Tensor, feasible: torch.Tensor, bounds: torch.Tensor, pad: float = 0.1) -> torch.Tensor:
    """:func:`data_box` of the feasible rows of ``X``, inside ``bounds``; ``bounds`` itself when fewer than
    two rows are feasible."""
    if int(feasible.sum()) < 2:
        return bounds
    box = data_box(X[feasible], pad)
    return torch.stack([torch.maximum(box[0], bounds[0]), torch.minimum(box[1], bounds[1])])


def trust_region_box(X: torch.Tensor, feasible: torch.Tensor, bounds: torch.Tensor,
                     constraints: Constraints) -> torch.Tensor:
    """The box TuRBO's region is a fraction of: ``bounds``, or under a similarity constraint
    the :func:`feasible_box`.

    Molecules too far from the lead are decoded from codes outside the lead's neighbourhood
    and would widen the box. Alerts and property ranges are left with ``bounds``: their
    infeasible molecules lie among the feasible ones, and sizing by the feasible codes lowered
    drug-like ESOL (200-450 Da, PAINS + Brenk; 3 seeds) from 1.01 to 0.70 best, 0.54 to -0.01
    top-10 mean (docs/BO_BENCHMARK.md).
    """
    if constraints.min_similarity is None:
        return bounds
    return feasible_box(X, feasible, bounds)


def model_identity(model) -> dict[str, str] | None:
    """Where a model was loaded from and the SHA-256 of its weights file (None for a model built in memory)."""
    digest = model.weights_sha256()
    return None if digest is None else {"source": str(model.source), "weights_sha256": digest}


def _seed_for(seed: int, round: int) -> int:
    return (seed * 1_000_003 + round * 7919) % (2**31 - 1)


class Optimizer:
    """One optimization run in ``out`` (see the module docstring)."""

    def __init__(self, model, config: OptimizeConfig, out: str | Path, objectives: list[Objective] | None = None,
                 resume: bool = False, progress: bool | None = None):
        self.model = model
        self.out = Path(out)
        self.config = config.validate()
        self.objectives = objectives if objectives is not None else parse_objectives(config.objectives)
        self.constraints = Constraints.from_dict(config.constraints) if config.constraints else Constraints()
        self.oracle = Oracle(self.objectives, config.budget, self.constraints, journal=self.out / JOURNAL_FILE,
                             score_infeasible=config.score_infeasible)
        check_output_dir(self.out, create=True)  # never a model's directory: config.json would replace its own
        # Held for this object's life: a second process resuming the same run would interleave its rows.
        self._lock: RunLock | None = lock_run_dir(self.out)
        self.model_identity = model_identity(model)
        if resume:
            self._check_same_model()
        self.prior = model.prior(self._recorded_prior(resume) or config.prior)
        self.method = config.method
        if self.method == "auto":
            self.method = "turbo" if model.config.latent_dim >= 64 else "bo"
        if len(self.objectives) > 1 and self.method == "turbo":
            self.method = "bo"  # the trust region follows one incumbent; several objectives use the global box
        self.progress = progress
        self.round = 0
        self.stalled = 0  # rounds in a row that scored nothing (the patience count)
        self.idle = 0  # rounds in a row that found no new molecule at all, feasible or not
        self.screen_pos = 0
        self.timings: list[dict[str, float]] = []
        # Boolean mask of the latent dimensions BO searches (None: all of them).
        self.active: torch.Tensor | None = None
        self.latents: dict[str, np.ndarray] = {}  # canonical SMILES -> code of the molecule actually scored
        self.initialized = False  # True once the initial design is committed (state.json written)
        if config.subspace != "full" and self.method in ("bo", "turbo"):
            self.active = self._search_mask(resume)
        self.tr = TrustRegion(dim=self.search_dim, batch=config.batch, failure_tolerance=config.tr_failure_tolerance)
        if resume:
            self.oracle.load_journal()
            if (self.out / EVALUATIONS_FILE).exists():
                self._load()
        else:
            check_new_run_dir(self.out)
            # An empty journal left by a run stopped before its first score.
            (self.out / JOURNAL_FILE).unlink(missing_ok=True)
        write_json(self.out / CONFIG_FILE, {"optimize": asdict(self.config), "method": self.method,
                                                  "prior": self.prior.name, "latent_dim": model.config.latent_dim})
        self._record_environment(resume)

    def _recorded_prior(self, resume: bool) -> str | None:
        """The prior a resumed run started with ("auto" is resolved to a name once, when the run starts)."""
        file = self.out / CONFIG_FILE
        if not resume or self.config.prior != "auto" or not file.is_file():
            return None
        recorded = read_json(file, "optimization config").get("prior")
        return recorded if isinstance(recorded, str) else None

    def _search_mask(self, resume: bool) -> torch.Tensor | None:
        """The active-dimension mask of ``subspace="active"`` or ``"auto"`` (None: search them all)."""
        d = self.model.config.latent_dim
        state_file = self.out / STATE_FILE
        saved = read_json(state_file, "optimization state") if resume and state_file.exists() else {}
        if "active_dims" in saved:  # a resumed run keeps the dimensions it started with (None: all)
            dims = saved["active_dims"]
            return None if dims is None else torch.as_tensor(np.isin(np.arange(d), dims))
        try:
            mask = active_latent_dimensions(self.model)
        except MolvaeError as exc:
            if self.config.subspace == "active":
                raise MolvaeError(f"--subspace active: {exc}; use --subspace full") from None
            log.warning("%s; BO searches all %d latent dimensions", exc, d)
            return None
        if mask.all():
            log.info("the model uses all %d latent dimensions; BO searches them all", d)
            return None
        log.info("BO searches the %d latent dimensions the encoder uses, of %d (--subspace %s)", int(mask.sum()), d,
                 self.config.subspace)
        return torch.as_tensor(mask)

    @property
    def search_dim(self) -> int:
        """Dimensions the GP and the acquisition work in: the active ones unless ``subspace`` is (or fell back to) full."""
        return self.model.config.latent_dim if self.active is None else int(self.active.sum())

    def _record_environment(self, resume: bool) -> None:
        """run_info.json: the environment of the start, plus one entry per resume.

        A run is reproducible on CPU for fixed package versions; BoTorch, gpytorch or torch of
        another version can propose other points from the same data, so a resume under other
        versions is said out loud rather than discovered as a mysterious divergence.
        """
        file = self.out / RUN_INFO_FILE
        here = environment_info()
        if not resume or not file.is_file():
            write_json(file, {**here, "model": self.model_identity, "resumes": []})
            return
        info = read_json(file, "run info")
        changed = {k: (v, here["versions"].get(k)) for k, v in (info.get("versions") or {}).items()
                   if here["versions"].get(k) != v}
        if changed:
            log.warning("%s was started with other package versions (%s): rounds from here on may differ from "
                        "an uninterrupted run", self.out,
                        ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(changed.items())))
        info.setdefault("resumes", []).append({"round": self.round, **here})
        write_json(file, info)

    def _check_same_model(self) -> None:
        """A resumed run must decode with the model it started with: codes of one model mean nothing to another."""
        file = self.out / RUN_INFO_FILE
        started = read_json(file, "run info").get("model") if file.is_file() else None
        if not started or not self.model_identity:
            return  # runs from before the model was recorded, or a model built in memory
        if started["weights_sha256"] != self.model_identity["weights_sha256"]:
            raise MolvaeError(f"{self.out} was started with the model in {started['source']} (other weights than "
                              f"{self.model_identity['source']}); resume it with that model (--model)")

    # ---- persistence
    def _load(self) -> None:
        evals = self.out / EVALUATIONS_FILE
        if not evals.exists():
            raise MolvaeError(f"nothing to resume in {self.out}: no evaluations.csv")
        # Scores must read back bit for bit, or the GP (and the run) would drift after a resume:
        # pandas 3 parses floats exactly by default (and deprecates the option); pandas 2 needs round_trip.
        exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
        df = pd.read_csv(evals, keep_default_na=False, na_values=[""], **exact)
        has_state = (self.out / STATE_FILE).exists()
        state = read_state(self.out / STATE_FILE) if has_state else {}
        committed = state.get("n_records") if has_state else 0
        if committed is not None:
            # Rows past the commit point belong to a round a kill interrupted: that round is redone
            # (its scores come back from the journal).
            if len(df) > committed:
                log.info("dropping %d rows of an interrupted round; their scores are reused", len(df) - committed)
            df = df.iloc[:committed]
        self.oracle.load_records(df)
        self.initialized = has_state
        if committed is None:  # state.json of a run started before the commit point existed
            self.round = int(df["round"].max()) if len(df) else 0
        else:
            self.round = int(state.get("round", 0))
        self.stalled = int(state.get("stalled", 0)) if state.get("round") == self.round else 0
        self.idle = int(state.get("idle", self.stalled)) if state.get("round") == self.round else 0
        self.screen_pos = int(state.get("screen_pos", 0))
        if state.get("trust_region"):
            self.tr = TrustRegion(**state["trust_region"])
        self.timings = list(state.get("timings", []))
        self._encode_new(self.oracle.known_records())
        log.info("resuming %s at round %d: %d oracle calls used of %d", self.out, self.round, self.oracle.calls,
                 self.oracle.budget)

    def save(self) -> None:
        """Write evaluations.csv, then state.json: the commit point of everything up to this round."""
        df = self.oracle.dataframe()
        atomic_write_text(self.out / EVALUATIONS_FILE, df.to_csv(index=False))
        write_json(self.out / STATE_FILE, {**self.state(), "n_records": len(self.oracle.records)})
        self.initialized = True

    def state(self) -> dict[str, Any]:
        best = self.best_value()
        return {"version": STATE_VERSION, "round": self.round, "method": self.method, "calls": self.oracle.calls,
                "budget": self.oracle.budget, "n_invalid": self.oracle.n_invalid, "n_repeat": self.oracle.n_repeat,
                "n_infeasible": sum(1 for r in self.oracle.known_records() if not r["feasible"]),
                "n_unscored": self.oracle.n_unscored, "best": best, "stalled": self.stalled, "idle": self.idle,
                "screen_pos": self.screen_pos,
                "active_dims": None if self.active is None else torch.nonzero(self.active).flatten().tolist(),
                "trust_region": self.tr.to_dict(), "finished": self.finished, "stop_reason": self.stop_reason,
                "timings": self.timings[-50:]}

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None

    @property
    def stop_reason(self) -> str | None:
        """Why the run stops (``"budget"``, ``"patience"`` or ``"max_rounds"``), or None while it goes on."""
        if self.oracle.remaining <= 0:
            return "budget"
        if self.stalled >= self.config.patience:
            return "patience"
        if self.config.max_rounds is not None and self.round >= self.config.max_rounds:
            return "max_rounds"
        return None

    # ---- data for the GP
    def _encode_new(self, records: list[dict[str, Any]]) -> None:
        """Encode the distinct valid molecules among oracle records (scored, supplied or infeasible)."""
        todo = [r["smiles"] for r in records if r["status"] in Oracle.KNOWN and r["smiles"] not in self.latents]
        # One molecule at a time: a batched GRU's output for a row shifts in the last bits with
        # the batch it sits in, and a resumed run re-encodes everything in different batches.
        # Alone, each code is bit-identical in every process, so the GP (and the run) is too.
        for s in todo:
            self.latents[s] = self.model.encode([s], errors="nan")[0]

    def training_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(X, Y) in float64: the codes of known molecules and their scores (infeasible ones at the worst value)."""
        X, Y, _, _ = self._training_data()
        return X, Y

    def _training_data(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`training_data` plus each row's Tanimoto similarity to the reference molecule (NaN without
        one) and whether it met the constraints."""
        recs = [r for r in self.oracle.known_records() if np.all(np.isfinite(self.latents.get(r["smiles"], np.nan)))]
        cols = self.oracle.score_columns
        if not recs:
            empty = torch.empty(0, self.model.config.latent_dim, dtype=torch.float64)
            return (empty, torch.empty(0, len(cols), dtype=torch.float64), torch.empty(0, dtype=torch.float64),
                    torch.empty(0, dtype=torch.bool))
        X = np.stack([self.latents[r["smiles"]] for r in recs]).astype(np.float64)
        Y = np.array([[r[c] for c in cols] for r in recs], dtype=np.float64)
        feasible = np.array([bool(r["feasible"]) for r in recs])
        finite = np.isfinite(Y)
        for j in range(Y.shape[1]):
            good = Y[feasible & finite[:, j], j]
            worst = good.min() if good.size else (Y[finite[:, j], j].min() if finite[:, j].any() else 0.0)
            Y[~feasible | ~finite[:, j], j] = worst
        keep = gp_window_index(Y, self.config.gp_window)
        sim = np.array([r.get("similarity", np.nan) for r in recs], dtype=np.float64)
        return (torch.from_numpy(X[keep]), torch.from_numpy(Y[keep]), torch.from_numpy(sim[keep]),
                torch.from_numpy(feasible[keep]))

    def best_value(self) -> float | None:
        vals = [r[self.oracle.score_columns[0]] for r in self.oracle.scored_records() if r["feasible"]]
        return float(max(vals)) if vals and len(self.objectives) == 1 else None

    # ---- initial design
    def initial_design(self) -> None:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        n = min(cfg.n_init, self.oracle.remaining)  # 0 with --budget 0: nothing to draw
        if cfg.init_file:
            self._init_from_file(cfg.init_file, rng)
        elif n > 0 and self.method not in ("screen", "prior") and self.constraints.min_similarity:
            self._init_around_lead(self.constraints.reference, n)
        elif n > 0 and self.method != "screen":
            from molvae.data import moses_file, sample_smiles

            # a random sample, not the first lines: MOSES is ordered (see sample_smiles)
            pool = sample_smiles(moses_file("train"), cfg.init_pool, seed=cfg.seed, column="SMILES")
            order = rng.permutation(len(pool))
            chosen: list[str] = []
            for start in range(0, len(order), 4 * n):  # skip molecules the model cannot encode
                cand = [pool[i] for i in order[start : start + 4 * n]]
                z = self.model.encode(cand, errors="nan")
                chosen += [s for s, row in zip(cand, z) if np.all(np.isfinite(row))]
                if len(chosen) >= n:
                    break
            self._encode_new(self.oracle.evaluate(chosen[:n], round=0, source="init"))
        self.save()

    def _init_around_lead(self, lead: str, n: int) -> None:
        """Lead optimization starts from the lead: random MOSES molecules would almost all fail
        the similarity constraint, leaving the GP a flat landscape to learn from.

        The lead is scored first, then ``n - 1`` distinct molecules decoded around its code.
        Decoding is cheap next to the oracle, so many codes are drawn (``32 n`` per radius) and
        the design is a diverse subset (MaxMin, away from the lead) of the feasible ones: the
        most similar ones would be near-copies of the lead that teach the GP little. While
        fewer than ``n - 1`` are feasible the radius halves (how far a latent step moves the
        decoded molecule depends on the model); if that still leaves fewer than ``n - 1``
        distinct molecules, it widens. Short of feasible ones, the most similar others fill
        the design (without ``score_infeasible`` they cost no call).
        """
        from molvae.chemistry import diverse_subset
        from molvae.latent import neighbourhood

        floor = self.constraints.min_similarity or 0.0
        found: dict[str, float] = {}
        r = self.config.init_radius
        for attempt, radius in enumerate((r, r / 2, r / 4, r / 8, 2 * r, 4 * r)):
            if attempt >= 4 and len(found) >= n - 1:
                break  # wider draws only when the narrow ones gave too few distinct molecules
            table = neighbourhood(self.model, lead, n=32 * n, radius=radius, seed=self.config.seed + attempt,
                                  properties=())
            found.update(zip(table["smiles"], table["tanimoto"]))
            found.pop(lead, None)
            if sum(v >= floor for v in found.values()) >= n - 1:
                break
        feasible = sorted(smi for smi, v in found.items() if v >= floor)
        picked = [feasible[i] for i in diverse_subset(feasible, n - 1, start=lead, seed=self.config.seed)]
        others = sorted((smi for smi in found if found[smi] < floor), key=lambda smi: (-found[smi], smi))
        self._encode_new(self.oracle.evaluate([lead, *picked, *others][:n], round=0, source="init"))

    def _init_from_file(self, path: str, rng: np.random.Generator) -> None:
        from molvae.data import iter_records, read_smiles, record_fields

        # Scores come with the molecules when the file has a column (or SD data field) per
        # objective, named as in evaluations.csv or by the objective; otherwise they are computed.
        fields = record_fields(path, self.config.init_smiles_column)
        alt = [o.name for o in self.objectives]
        have = init_score_fields(path, fields, alt, self.oracle.score_columns)
        # A column named like a built-in objective holds the property as `molvae properties` and
        # evaluations.csv write it: raw SA for the objective sa, which is minus SA.
        signs = [BUILTIN_OBJECTIVES[a][1] if h == a and a in BUILTIN_OBJECTIVES else 1.0 for h, a in zip(have, alt)]
        if not all(h is not None for h in have):
            log.info("--init %s: no column of scores for %s; its molecules are scored", path,
                     ", ".join(a for a, h in zip(alt, have) if h is None))
            smiles = read_smiles(path, column=self.config.init_smiles_column, allow_empty=False)
            self._encode_new(self.oracle.evaluate(smiles, round=0, source="init-file"))
            return
        log.info("--init %s: scores from %s", path,
                 ", ".join(f"column {h!r}" + (f" for {a}" if h != a else "") for h, a in zip(have, alt)))
        records = list(iter_records(path, self.config.init_smiles_column, keep=have, allow_empty=False))
        scores = np.full((len(records), len(have)), np.nan)
        for i, (_, values) in enumerate(records):
            for j, value in enumerate(values):
                if value is None or (isinstance(value, str) and not value.strip()):
                    continue  # no score given: NaN, as an empty cell always was
                try:
                    scores[i, j] = signs[j] * float(value)
                except (TypeError, ValueError):
                    raise MolvaeError(f"{path}, record {i + 1}: score column {have[j]!r} holds {value!r}, "
                                      "not a number") from None
        rows = self.oracle.add_supplied([smiles for smiles, _ in records], scores, round=0, source="init-file")
        self._encode_new(rows)

    # ---- one round
    def step(self) -> list[dict[str, Any]]:
        with _torch_threads(self.config.threads):
            return self._step()

    def _step(self) -> list[dict[str, Any]]:
        cfg = self.config
        self.round += 1
        seed = _seed_for(cfg.seed, self.round)
        torch.manual_seed(seed)
        q = min(cfg.batch, max(self.oracle.remaining, 1))
        t0 = time.perf_counter()
        timing = {"round": self.round, "fit": 0.0, "acquisition": 0.0, "decode": 0.0, "score": 0.0}
        before = self.best_value()
        source = self.method
        if self.method == "screen":
            smiles = self._screen_batch(q)
        elif self._local_round():
            source = "local"
            t1 = time.perf_counter()
            smiles = self._local_batch(q, seed)
            timing["decode"] = time.perf_counter() - t1
        else:
            if self.method == "prior":
                z = torch.from_numpy(self.prior.sample(q, seed=seed))
            else:
                z = self._propose(q, timing)
            t1 = time.perf_counter()
            smiles = self.model.decode_valid(z.float().numpy(), attempts=cfg.decode_attempts,
                                             temperature=cfg.decode_temperature, seed=seed)
            timing["decode"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        rows = self.oracle.evaluate(smiles, round=self.round, source=source)
        timing["score"] = time.perf_counter() - t2
        self._encode_new(rows)
        after = self.best_value()
        improved = after is not None and (before is None or after > before + 1e-3 * abs(before))
        if self.method == "turbo":
            self.tr.update(improved)
        self.stalled = 0 if any(r["status"] == "scored" for r in rows) else self.stalled + 1
        self.idle = 0 if any(r["status"] in Oracle.KNOWN for r in rows) else self.idle + 1
        timing["total"] = time.perf_counter() - t0
        self.timings.append(timing)
        self.save()
        return rows

    def _propose(self, q: int, timing: dict[str, float]) -> torch.Tensor:
        X, Y, S, F = self._training_data()
        d = self.model.config.latent_dim
        if len(X) < 2:  # nothing to model yet: draw from the prior
            return torch.from_numpy(self.prior.sample(q, seed=_seed_for(self.config.seed, self.round))).double()
        if self.active is None:
            return self._propose_in(X, Y, S, F, q, timing)
        # The collapsed dimensions carry no information about the molecule: as GP inputs they
        # are noise the kernel must learn to ignore, and the acquisition would search them too.
        z = torch.empty(q, d, dtype=X.dtype)
        z[:, ~self.active] = X[:, ~self.active].mean(0)
        z[:, self.active] = self._propose_in(X[:, self.active], Y, S, F, q, timing)
        return z

    def _propose_in(self, X: torch.Tensor, Y: torch.Tensor, S: torch.Tensor, F: torch.Tensor, q: int,
                    timing: dict[str, float]) -> torch.Tensor:
        """q points in the space of ``X``'s columns: GP fit, then the acquisition in the box of the method."""
        d = X.shape[1]
        bounds = data_box(X)
        t = time.perf_counter()
        gp = fit_gp(X, Y, bounds, maxiter=self.config.gp_maxiter)
        constraint = None
        floor = self.constraints.min_similarity
        if (self.config.similarity_gp and floor is not None and Y.shape[-1] == 1
                and ACQUISITIONS[self.config.acquisition].constrained and torch.isfinite(S).all()):
            # A second GP on the similarity to the lead: qLogEI then weighs each candidate's
            # improvement by its probability of staying similar enough, instead of learning the
            # constraint only from infeasible molecules scored at the worst value.
            constraint = (fit_gp(X, S.unsqueeze(-1), bounds, maxiter=self.config.gp_maxiter), floor)
        timing["fit"] = time.perf_counter() - t
        t = time.perf_counter()
        ref = None
        if Y.shape[-1] > 1:
            span = (Y.max(0).values - Y.min(0).values).clamp_min(1e-6)
            ref = Y.min(0).values - 0.1 * span
            box = bounds
        elif self.method == "turbo":
            center = X[Y[:, 0].argmax()]
            region = trust_region_box(X, F, bounds, self.constraints)
            box = self.tr.bounds(center, _lengthscale(gp), region[0], region[1])
        else:
            box = bounds
        # After rounds that brought nothing new (every decode a repeat or invalid), swap part of
        # the batch for uniform draws in the data box so the search does not sit on known molecules.
        # A round of new infeasible molecules is not idle: the GP learned where the constraint bites.
        n_explore = min(q, self.idle * max(1, q // 2))
        z = (propose_latents(gp, X, Y, box, q - n_explore, self.config, ref_point=ref, constraint=constraint)
             if q > n_explore else X[:0])
        if n_explore:
            u = torch.rand(n_explore, d, dtype=torch.float64)
            z = torch.cat([z, bounds[0] + (bounds[1] - bounds[0]) * u])
        timing["acquisition"] = time.perf_counter() - t
        return z

    def _local_round(self) -> bool:
        cfg = self.config
        # every local_after-th stalled round, so the GP keeps its turns if the neighbourhood runs dry
        return (cfg.local_after is not None and self.stalled > 0 and self.stalled % cfg.local_after == 0
                and self.method in ("turbo", "bo") and self.constraints.min_similarity is not None
                and len(self.objectives) == 1)

    def _local_batch(self, q: int, seed: int) -> list[str]:
        """New feasible molecules decoded around the best feasible ones, for a run whose GP rounds stall.

        Under a similarity constraint the GP's proposals mostly decode outside the feasible
        region, while the lead's decoded neighbourhood (the initial design) holds the run's
        best molecules. The constraints cost no oracle call to check, so ``32 q`` codes are
        drawn around the three best feasible molecules and a diverse subset (away from the
        incumbent) of the unseen feasible decodes is scored. As in the initial design, the
        radius halves while that finds fewer than ``q``.
        """
        from molvae.chemistry import diverse_subset

        col = self.oracle.score_columns[0]
        # a molecule the model cannot encode (NaN code) has no neighbourhood to draw from
        top = sorted((r for r in self.oracle.scored_records()
                      if r["feasible"] and np.all(np.isfinite(self.latents.get(r["smiles"], np.nan)))),
                     key=lambda r: (-r[col], r["smiles"]))[:3]
        if not top:
            return []
        known = {r["smiles"] for r in self.oracle.records}
        rng = np.random.default_rng(seed)
        centres = np.stack([self.latents[r["smiles"]] for r in top])
        feasible: set[str] = set()
        r = self.config.init_radius
        for radius in (r, r / 2, r / 4):
            pick = rng.integers(len(centres), size=32 * q)
            z = centres[pick] + radius * rng.standard_normal((32 * q, centres.shape[1]))
            decoded = self.model.decode_valid(z.astype(np.float32), attempts=1, seed=seed)
            new = sorted({s for s in decoded if s and s not in known and s not in feasible})
            if new:
                ok, _, _ = self.constraints.check(new)
                feasible.update(s for s, good in zip(new, ok) if good)
            if len(feasible) >= q:
                break
        pool = sorted(feasible)
        return [pool[i] for i in diverse_subset(pool, q, start=top[0]["smiles"], seed=seed)]

    def _screen_batch(self, q: int) -> list[str]:
        if not hasattr(self, "_screen_pool"):
            pool = _moses_train_smiles()
            self._screen_pool = [pool[i] for i in np.random.default_rng(self.config.seed).permutation(len(pool))]
        out: list[str] = []
        while len(out) < q and self.screen_pos < len(self._screen_pool):
            out.append(self._screen_pool[self.screen_pos])
            self.screen_pos += 1
        return out

    # ---- driving the run
    def run(self) -> "Optimizer":
        if self._lock is None:  # run() again after an earlier run() released it
            self._lock = lock_run_dir(self.out)
        try:
            return self._run()
        finally:
            # Not left to garbage collection: another process may resume this run as soon as run returns.
            self._lock.release()
            self._lock = None

    def _run(self) -> "Optimizer":
        from tqdm import tqdm

        if not self.initialized:
            self.initial_design()
        bar = tqdm(total=self.oracle.budget, initial=self.oracle.calls, disable=None if self.progress is None else not self.progress,
                   desc=f"optimize ({self.method})", unit="call")
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
        if self.stop_reason == "patience":
            log.warning("stopped after %d rounds without a new molecule to score (%d of %d oracle calls used)",
                        self.stalled, self.oracle.calls, self.oracle.budget)
        elif self.stop_reason == "max_rounds":
            log.warning("stopped at the round limit (%d rounds) with %d of %d oracle calls used",
                        self.round, self.oracle.calls, self.oracle.budget)
        return self

    # ---- reports
    def feasible_table(self) -> pd.DataFrame:
        from molvae.optimization.report import feasible_rows

        return feasible_rows(self.oracle.dataframe())

    def write_reports(self, baselines: dict[str, Path] | None = None) -> None:
        from molvae.optimization.report import best_table, pareto_table, plot_progress
        from molvae.tables import write_rows

        df = self.oracle.dataframe()
        cols = self.oracle.score_columns
        best = best_table(df, cols, self.config.top_k)
        atomic_write_text(self.out / BEST_FILE, best.to_csv(index=False))
        write_rows(self.out / BEST_SDF, [best])  # for molecule viewers and docking tools
        if len(cols) > 1:
            atomic_write_text(self.out / PARETO_FILE, pareto_table(df, cols).to_csv(index=False))
        plot_progress(self.out / PROGRESS_PLOT, df, cols, baselines=baselines,
                      labels=[o.description or o.name for o in self.objectives])
        if len(best):
            from molvae.visualize import draw_grid

            legends = [" ".join(f"{row[c]:.3g}" for c in cols) for _, row in best.head(20).iterrows()]
            try:
                draw_grid(best["smiles"].head(20).tolist(), self.out / BEST_PLOT, legends)
            except Exception as exc:  # a picture must never lose a run
                log.warning("could not draw best.png: %s", exc)


def saved_settings(out: str | Path) -> dict[str, Any]:
    """The ``OptimizeConfig`` fields a run in ``out`` was started with (its config.json), for resuming it.

    Runs saved before ``score_infeasible`` existed charged an oracle call for every infeasible
    molecule; they resume with that accounting. Runs saved before ``local_after`` existed
    resume without local rounds, and runs saved before ``subspace`` existed searched all dimensions.
    """
    saved = dict(read_json(Path(out) / CONFIG_FILE, "optimization config").get("optimize", {}))
    saved.setdefault("score_infeasible", True)
    saved.setdefault("local_after", None)
    saved.setdefault("subspace", "full")
    return saved


# The stopping rules a resume may change; every other setting belongs to the run.
RESUME_MAY_CHANGE = ("budget", "max_rounds")


def check_resume_settings(out: str | Path, saved: dict[str, Any], given: dict[str, Any],
                          names: dict[str, str] | None = None) -> None:
    """A one-line :class:`ConfigError` when ``given`` settings differ from those the run in ``out`` was saved with.

    A resume continues the saved run exactly (same batch, seed, method, constraints...), so a
    different value passed with it would be ignored; saying so beats a silent surprise.
    ``names`` shows a setting under another name (the CLI's option) in the message.
    """
    names = names or {}
    changed = [names.get(k, k) + ("" if v is None or v is True else f" {v!r}") + f" (the run has {saved.get(k)!r})"
               for k, v in given.items() if k not in RESUME_MAY_CHANGE and saved.get(k) != v]
    if changed:
        raise ConfigError(f"{out}: a resumed run keeps the settings it was started with (only "
                          f"{' and '.join(names.get(k, k) for k in RESUME_MAY_CHANGE)} may change); got "
                          + "; ".join(changed))


def _rules(constraints: dict[str, Any] | None) -> dict[str, Any]:
    """Constraints as resolved (canonical reference SMILES), without the display name: for comparing two runs."""
    return {k: v for k, v in Constraints.from_dict(constraints or {}).to_dict().items() if k != "reference_name"}


def optimize(model, objectives: str | list[str], out: str | Path, resume: bool = False, progress: bool | None = False,
             **options: Any) -> Optimizer:
    """Run (or resume) an optimization; returns the finished :class:`Optimizer`.

    >>> opt = optimize(model, "qed", "runs/qed", budget=200, batch=10, seed=1)
    >>> opt.feasible_table().sort_values("score").tail()
    """
    specs = [objectives] if isinstance(objectives, str) and "," not in objectives else objectives
    if isinstance(specs, str):
        from molvae.optimization.objectives import _split_top_level

        specs = _split_top_level(specs, ",")
    config = OptimizeConfig.from_dict({"objectives": list(specs), **options})
    if resume and (Path(out) / CONFIG_FILE).exists():
        saved = saved_settings(out)
        given, before = dict(options), dict(saved)
        given["objectives"] = [o.name for o in parse_objectives(config.objectives)]
        before["objectives"] = [o.name for o in parse_objectives(saved.get("objectives", []))]
        if "constraints" in options:  # compare resolved rules, not spellings ("celecoxib" or its SMILES)
            given["constraints"] = _rules(options["constraints"])
            before["constraints"] = _rules(saved.get("constraints"))
        check_resume_settings(out, before, given)
        for key in RESUME_MAY_CHANGE:  # the stopping rules: extend (or cut) the run
            if key in options:
                saved[key] = options[key]
        config = OptimizeConfig.from_dict(saved)
    return Optimizer(model, config, out, resume=resume, progress=progress).run()
