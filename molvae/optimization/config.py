"""What defines an optimization run (:class:`OptimizeConfig`, saved as config.json) and the rules of resuming one.

``resume_config`` is the one place that decides what a resume may change: the Python
API (:func:`molvae.optimization.optimize`) and ``molvae optimize --resume`` both call it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from molvae.config import config_from_dict, rule, validate_config
from molvae.errors import ConfigError, MolvaeError
from molvae.folders import CONFIG_FILE
from molvae.optimization.acquisition import ACQUISITIONS
from molvae.optimization.constraints import Constraints, range_table
from molvae.optimization.objectives import parse_objectives
from molvae.optimization.store import read_run_config

__all__ = [
    "METHODS",
    "SUBSPACES",
    "RESUME_MAY_CHANGE",
    "OptimizeConfig",
    "check_resume_settings",
    "resolve_method",
    "resume_config",
    "saved_settings",
]

METHODS = ("auto", "bo", "turbo", "prior", "screen")
SUBSPACES = ("auto", "active", "full")
# The stopping rules a resume may change; every other setting belongs to the run.
RESUME_MAY_CHANGE = ("budget", "max_rounds")


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
    # uses (molvae.optimization.subspace); the others, collapsed to the prior and ignored by the
    # decoder, are held at the data's mean. "full": all. "auto": active, or full with a warning
    # where the active ones cannot be measured (a model of another chemistry) or are all of them.
    # docs/BO_BENCHMARK.md compares the two.
    subspace: str = field(default="auto", metadata=rule(choices=SUBSPACES))
    # latent prior of the prior-sampling rounds (--method prior, --baselines) and of proposals made
    # before there is data to fit: "auto" (the model's default; the name it resolved to when the run
    # started is recorded in config.json, so a resumed run keeps it), "standard" or a stored prior
    prior: str = "auto"
    # bo/turbo: a candidate whose prior log density is below the density_quantile of the scored
    # codes' loses this much log acquisition per nat below it, so proposals stay where the codes
    # of real molecules lie and fewer decode to nothing valid (molvae.optimization.density); 0: off
    density_weight: float = field(default=0.0, metadata=rule(ge=0.0))
    density_quantile: float = field(default=0.01, metadata=rule(gt=0.0, lt=1.0))
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
    # it as a constraint (candidates chosen one by one, so rounds are slower: docs/BO_BENCHMARK.md)
    similarity_gp: bool = False
    # spend oracle calls on molecules that fail a constraint (runs before this option did; their
    # scores then appear in evaluations.csv); by default they are recorded, not scored, and cost nothing
    score_infeasible: bool = False

    def validate(self) -> OptimizeConfig:
        """Check types and ranges (``molvae.config.validate_config``); returns ``self``."""
        validate_config(self, "optimization config")
        if not 1 <= len(self.objectives) <= 3:
            raise ConfigError(f"optimization config: one to three objectives, got {len(self.objectives)}")
        if self.init_smiles_column is not None and self.init_file is None:
            raise ConfigError(
                "optimization config: init_smiles_column (--smiles-column) names a column of the "
                "init_file (--init), and there is none"
            )
        if self.density_weight > 0 and len(self.objectives) == 1 and not ACQUISITIONS[self.acquisition].log_valued:
            logs = ", ".join(name for name, a in ACQUISITIONS.items() if a.log_valued)
            raise ConfigError(
                f"optimization config: density_weight (--density-weight) weights a log-valued acquisition "
                f"({logs}), not {self.acquisition}"
            )
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OptimizeConfig:
        """Build from parsed JSON; unknown fields and bad values raise :class:`~molvae.errors.ConfigError`."""
        return config_from_dict(cls, data, "optimization config").validate()


def resolve_method(method: str, latent_dim: int, n_objectives: int) -> str:
    """The method a run uses: ``auto`` is turbo for latents of 64 dimensions or more, else bo."""
    if method == "auto":
        method = "turbo" if latent_dim >= 64 else "bo"
    if n_objectives > 1 and method == "turbo":
        return "bo"  # the trust region follows one incumbent; several objectives use the global box
    return method


def saved_settings(out: str | Path) -> dict[str, Any]:
    """The ``OptimizeConfig`` fields a run in ``out`` was started with (its config.json), for resuming it."""
    return dict(read_run_config(Path(out)).get("optimize", {}))


def check_resume_settings(
    out: str | Path, saved: dict[str, Any], given: dict[str, Any], names: Mapping[str, str] | None = None
) -> None:
    """A one-line :class:`.ConfigError` when ``given`` settings differ from those the run in ``out`` was saved with.

    A resume continues the saved run exactly (same batch, seed, method, constraints...), so a
    different value passed with it would be ignored; saying so beats a silent surprise.
    ``names`` shows a setting under another name (the CLI's option) in the message.
    """
    names = names or {}
    changed = [
        names.get(k, k) + ("" if v is None or v is True else f" {v!r}") + f" (the run has {saved.get(k)!r})"
        for k, v in given.items()
        if k not in RESUME_MAY_CHANGE and saved.get(k) != v
    ]
    if changed:
        raise ConfigError(
            f"{out}: a resumed run keeps the settings it was started with (only "
            f"{' and '.join(names.get(k, k) for k in RESUME_MAY_CHANGE)} may change); got " + "; ".join(changed)
        )


def resume_config(
    out: str | Path,
    given: Mapping[str, Any],
    names: Mapping[str, str] | None = None,
    objectives_option: str | None = None,
) -> OptimizeConfig:
    """The configuration that resumes the run saved in ``out``: its own settings, with the stopping rules of ``given``.

    ``given`` holds the settings passed with the resume: ``OptimizeConfig`` fields, or single
    rules as ``constraints.<rule>`` (``reference``, ``min_similarity``, ``alerts``, ``ranges``, as
    the CLI's options give them). Budget and round limit replace the saved ones; every other
    setting must equal the saved one (objectives by name, constraints as resolved, so a drug name
    equals its SMILES), or a :class:`~molvae.errors.ConfigError` names each that differs. ``names``: how the
    caller spells each setting (the CLI's options). ``objectives_option``: the option that gave
    ``given["objectives"]``; other objectives are then an error of their own that names it.
    """
    out = Path(out)
    names = names or {}
    saved = saved_settings(out)
    try:
        OptimizeConfig.from_dict(saved)
    except ConfigError as exc:  # name the file: the user has to edit it (or start over)
        raise ConfigError(f"{out / CONFIG_FILE}: {exc}") from None
    stops = {k: given[k] for k in RESUME_MAY_CHANGE if k in given}
    try:
        config = OptimizeConfig.from_dict({**saved, **stops})
    except ConfigError as exc:  # a bad value given now, not in the file
        raise ConfigError(" ".join(f"{names.get(k, k)} {v}" for k, v in stops.items()) + f": {exc}") from None
    if objectives_option and "objectives" in given:
        spec = given["objectives"]
        if _objective_names(spec) != _objective_names(config.objectives):
            raise MolvaeError(
                f"{out} optimizes {', '.join(config.objectives)}, not {spec}; drop {objectives_option} to resume"
            )
    before = {**saved, **{k: view(saved) for k, (_, view) in _COMPARED.items() if k in given}}
    now = {k: _COMPARED[k][0](v) if k in _COMPARED else v for k, v in given.items()}
    check_resume_settings(out, before, now, names)
    return config


def _objective_names(specs: str | Sequence[str]) -> list[str]:
    return [o.name for o in parse_objectives(specs)]


def _rules(constraints: dict[str, Any] | None) -> dict[str, Any]:
    """Constraints as resolved (canonical reference SMILES), without the display name: for comparing two runs."""
    return {k: v for k, v in Constraints.from_dict(constraints or {}).to_dict().items() if k != "reference_name"}


def _saved_rules(saved: dict[str, Any]) -> Constraints:
    return Constraints.from_dict(saved.get("constraints") or {})


def _alerts(value: str | Sequence[str]) -> list[str]:
    return value.split(",") if isinstance(value, str) else list(value)


def _range_lists(ranges: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    return {k: list(r) for k, r in ranges.items()}


# How a setting given with a resume is compared with the run's: (the given value as compared, the
# saved run's value). Settings not listed compare as they are.
_COMPARED: dict[str, tuple[Callable[[Any], Any], Callable[[dict[str, Any]], Any]]] = {
    "objectives": (_objective_names, lambda saved: _objective_names(saved.get("objectives", []))),
    "constraints": (_rules, lambda saved: _rules(saved.get("constraints"))),
    "constraints.reference": (
        lambda v: Constraints(reference=v).reference,
        lambda saved: _saved_rules(saved).reference,
    ),
    "constraints.min_similarity": (float, lambda saved: _saved_rules(saved).min_similarity),
    "constraints.alerts": (_alerts, lambda saved: list(_saved_rules(saved).alerts or []) or None),
    "constraints.ranges": (
        lambda v: _range_lists(range_table(v)),
        lambda saved: _range_lists(_saved_rules(saved).ranges) or None,
    ),
}
