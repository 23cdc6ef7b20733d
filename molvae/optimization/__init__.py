"""Latent-space optimization of molecules: objectives, BO (GP + acquisition, trust region), baselines.

>>> from molvae.model import MolVAE
>>> from molvae.optimization import optimize
>>> opt = optimize(MolVAE.load("runs/x"), "esol", "runs/sol", budget=500, batch=10)
>>> opt.feasible_table().nlargest(5, "score")
"""

from molvae.optimization.acquisition import ACQUISITIONS, propose_latents
from molvae.optimization.baselines import BASELINES, load_baseline_tables, run_baseline, run_baselines
from molvae.optimization.config import METHODS, OptimizeConfig
from molvae.optimization.constraints import Constraints, parse_range
from molvae.optimization.gp import TrustRegion, fit_gp
from molvae.optimization.objectives import (
    BUILTIN_OBJECTIVES,
    Objective,
    ObjectiveError,
    parse_objective,
    parse_objectives,
)
from molvae.optimization.optimizer import Optimizer, optimize
from molvae.optimization.oracle import Oracle
from molvae.optimization.report import best_table, pareto_mask, pareto_table, plot_progress, progress_curves

__all__ = [
    "ACQUISITIONS",
    "BASELINES",
    "BUILTIN_OBJECTIVES",
    "METHODS",
    "Constraints",
    "Objective",
    "ObjectiveError",
    "OptimizeConfig",
    "Optimizer",
    "Oracle",
    "TrustRegion",
    "best_table",
    "fit_gp",
    "load_baseline_tables",
    "optimize",
    "pareto_mask",
    "pareto_table",
    "parse_objective",
    "parse_objectives",
    "parse_range",
    "plot_progress",
    "progress_curves",
    "propose_latents",
    "run_baseline",
    "run_baselines",
]
