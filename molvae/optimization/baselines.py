"""Baselines in the same harness and budget accounting as BO.

* ``prior``: decode N(0, I) draws (``MolVAE.decode_valid``) in batches;
* ``screen``: score random molecules of the MOSES training set.

Each baseline is an ordinary run (same objectives, constraints, budget, batch
and seed; no initial design) written to ``<out>/baselines/<name>``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from molvae.folders import BASELINES_DIR, CONFIG_FILE, EVALUATIONS_FILE
from molvae.optimization.config import OptimizeConfig
from molvae.optimization.objectives import Objective
from molvae.optimization.optimizer import Optimizer

__all__ = ["BASELINES", "run_baseline", "run_baselines", "load_baseline_tables"]

BASELINES = ("prior", "screen")


def run_baseline(
    model,
    config: OptimizeConfig,
    out: str | Path,
    method: str,
    objectives: list[Objective] | None = None,
    resume: bool = False,
    progress: bool | None = False,
) -> Optimizer:
    if method not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {method!r}")
    cfg = dataclasses.replace(config, method=method, n_init=0, init_file=None, init_smiles_column=None)
    # A baseline the main run's kill stopped before it started has nothing of its own to resume.
    resume = resume and (Path(out) / CONFIG_FILE).exists()
    return Optimizer(model, cfg, out, objectives=objectives, resume=resume, progress=progress).run()


def run_baselines(
    model,
    config: OptimizeConfig,
    out: str | Path,
    methods=BASELINES,
    objectives: list[Objective] | None = None,
    resume: bool = False,
    progress: bool | None = False,
) -> dict[str, Optimizer]:
    """Run each baseline into ``out/baselines/<name>``."""
    return {
        m: run_baseline(model, config, Path(out) / BASELINES_DIR / m, m, objectives, resume, progress) for m in methods
    }


def load_baseline_tables(out: str | Path) -> dict[str, pd.DataFrame]:
    """evaluations.csv of each baseline run under ``out/baselines``."""
    tables = {}
    for name in BASELINES:
        path = Path(out) / BASELINES_DIR / name / EVALUATIONS_FILE
        if path.exists():
            tables[name] = pd.read_csv(path, keep_default_na=False, na_values=[""])
    return tables
