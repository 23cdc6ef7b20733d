"""Where the BO loop and its helpers lived before issue 42 split them up; kept so that code importing
``molvae.optimization.bo`` keeps working. New code imports from their homes:

* :mod:`~molvae.optimization.config`: :class:`~molvae.optimization.OptimizeConfig`, the methods, the resume rules;
* :mod:`~molvae.optimization.gp`: GP fit and data, the trust region and the boxes;
* :mod:`~molvae.optimization.subspace`: the active latent dimensions;
* :mod:`~molvae.optimization.store`: the run folder's files (config.json, evaluations.csv, state.json,
  run_info.json, the score journal);
* :mod:`~molvae.optimization.designs` and :mod:`~molvae.optimization.proposers`: initial designs and
  each round's proposals;
* :mod:`~molvae.optimization.optimizer`: :class:`.Optimizer` and :func:`.optimize`.
"""

from molvae.optimization.config import (
    METHODS,
    RESUME_MAY_CHANGE,
    SUBSPACES,
    OptimizeConfig,
    check_resume_settings,
    resume_config,
    saved_settings,
)
from molvae.optimization.designs import init_score_fields
from molvae.optimization.gp import TrustRegion, data_box, feasible_box, fit_gp, gp_window_index, trust_region_box
from molvae.optimization.optimizer import Optimizer, optimize
from molvae.optimization.proposers import round_seed as _seed_for
from molvae.optimization.store import STATE_VERSION, check_new_run_dir, model_identity, read_state
from molvae.optimization.subspace import ACTIVE_SAMPLE, active_latent_dimensions

__all__ = [
    "ACTIVE_SAMPLE",
    "METHODS",
    "RESUME_MAY_CHANGE",
    "STATE_VERSION",
    "SUBSPACES",
    "OptimizeConfig",
    "Optimizer",
    "TrustRegion",
    "_seed_for",
    "active_latent_dimensions",
    "check_new_run_dir",
    "check_resume_settings",
    "data_box",
    "feasible_box",
    "fit_gp",
    "gp_window_index",
    "init_score_fields",
    "model_identity",
    "optimize",
    "read_state",
    "resume_config",
    "saved_settings",
    "trust_region_box",
]
