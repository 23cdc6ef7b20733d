"""Benchmark lead optimization: raise a drug's property while staying similar to it.

Each cell (lead x seed) runs what

    molvae optimize --objective esol --similar-to LEAD --min-similarity 0.4 --budget 150 \\
        --n-init 20 --max-rounds 60 --seed S

runs, and prints the lead's score, the best feasible molecule's score, the gain, the lowest
similarity among the molecules the run reports (best.csv), the calls and rounds used and why
the run stopped. The acceptance bar of lead optimization (issue 5) is a gain of at least one
log unit of ESOL logS with every reported molecule at or above the similarity floor.

    python scripts/bench_lead.py --leads celecoxib --seeds 0,1,2,3,4,5,6,7 --jobs 2
    python scripts/bench_lead.py --rule 8 --jobs 2               # eight leads picked by rule
    python scripts/bench_lead.py --rule 8 --jobs 2 --no-local    # the same without local rounds

``--rule N`` takes the first N drugs, alphabetically, of the bundled drug table with ESOL
logS below -4 and a molecular weight of 250-450 Da (poorly soluble and drug-sized), so the
leads are not picked by hand. Each cell runs on one torch thread, so ``--jobs`` up to the
number of cores runs cells side by side. The last printed line is one JSON object with every
figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from bench_bo import exit_with_parent, worker_model

from molvae.chemistry import esol_logs, molecular_weight
from molvae.drugs import load_drug_table, resolve_molecule
from molvae.errors import MolvaeError
from molvae.model import MolVAE
from molvae.optimization import Constraints, OptimizeConfig, Optimizer, best_table, parse_objective


def rule_leads(n: int, max_logs: float = -4.0, mw: tuple[float, float] = (250.0, 450.0)) -> list[str]:
    """The first ``n`` drugs (by name) of the bundled table with ESOL logS < ``max_logs`` and MW within ``mw``."""
    table = load_drug_table().sort_values("name", kind="stable")
    smiles = table["smiles"].tolist()
    weight = molecular_weight(smiles)
    keep = (esol_logs(smiles) < max_logs) & (weight >= mw[0]) & (weight <= mw[1])
    names = table["name"][keep].tolist()
    if len(names) < n:
        raise SystemExit(f"--rule {n}: only {len(names)} drugs in the table meet the rule")
    return names[:n]


def lead_config(lead: str, seed: int, args) -> OptimizeConfig:
    """The OptimizeConfig ``molvae optimize --similar-to LEAD ...`` builds for these settings."""
    name, ref = resolve_molecule(lead)
    constraints = Constraints(reference=ref, reference_name=name, min_similarity=args.min_similarity).to_dict()
    return OptimizeConfig(
        objectives=[args.objective],
        budget=args.budget,
        n_init=args.n_init,
        seed=seed,
        max_rounds=args.max_rounds,
        local_after=args.local_after,
        subspace=args.subspace,
        constraints=constraints,
    ).validate()


def cell_name(lead: str, seed: int) -> str:
    """The cell's folder under --keep: the lead as given (a SMILES may hold / and brackets) made path-safe."""
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', lead)}-{seed}"


def run_cell(model: MolVAE, lead: str, seed: int, args) -> dict:
    cfg = lead_config(lead, seed, args)
    ref = cfg.constraints["reference"]
    lead_score = float(parse_objective(args.objective)([ref])[0])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) / cell_name(lead, seed) if args.keep else Path(tmp) / "run"
        t = time.perf_counter()
        opt = Optimizer(model, cfg, out, progress=False).run()
        wall = time.perf_counter() - t
        # the molecules the run reports: its best.csv
        best = best_table(opt.oracle.dataframe(), opt.oracle.score_columns, cfg.top_k)
    col = opt.oracle.score_columns[0]
    top = best.iloc[0] if len(best) else None
    return {
        "lead": lead,
        "seed": seed,
        "lead_score": round(lead_score, 3),
        "best": None if top is None else round(float(top[col]), 3),
        "gain": None if top is None else round(float(top[col]) - lead_score, 3),
        "min_similarity_reported": None if top is None else round(float(best["similarity"].min()), 3),
        "reported": len(best),
        "best_smiles": None if top is None else top["smiles"],
        "best_source": None if top is None else top["source"],
        "calls": opt.oracle.calls,
        "rounds": opt.round,
        "stop_reason": opt.stop_reason,
        "wall_s": round(wall, 1),
    }


def _cell_in_worker(model_name: str, lead: str, seed: int, args) -> dict:
    """Worker-process entry: run one cell."""
    return run_cell(worker_model(model_name), lead, seed, args)


def summarize(cells: list[dict], bar: float, floor: float) -> dict:
    """Mean gain, and how many cells met the bar (gain >= ``bar`` with every reported molecule >= ``floor``)."""
    gains = np.array([c["gain"] if c["gain"] is not None else np.nan for c in cells])
    met = [c["gain"] is not None and c["gain"] >= bar and c["min_similarity_reported"] >= floor for c in cells]
    return {
        "cells": len(cells),
        "mean_gain": round(float(np.nanmean(gains)), 3) if np.isfinite(gains).any() else None,
        "min_gain": round(float(np.nanmin(gains)), 3) if np.isfinite(gains).any() else None,
        "met": int(sum(met)),
        "all_reported_feasible": all(
            c["min_similarity_reported"] is None or c["min_similarity_reported"] >= floor for c in cells
        ),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="zinc-smiles", help="bundled model name or model directory")
    leads = p.add_mutually_exclusive_group()
    leads.add_argument("--leads", default=None, help="comma-separated drug names or SMILES (default celecoxib)")
    leads.add_argument(
        "--rule",
        type=int,
        default=None,
        metavar="N",
        help="the first N drugs of the bundled table with ESOL logS < -4 and MW 250-450 Da",
    )
    p.add_argument("--seeds", default="0")
    p.add_argument("--objective", default="esol")
    p.add_argument("--min-similarity", type=float, default=0.4)
    p.add_argument("--budget", type=int, default=150)
    p.add_argument("--n-init", type=int, default=20)
    p.add_argument("--max-rounds", type=int, default=60)
    p.add_argument("--local-after", type=int, default=5, help="OptimizeConfig.local_after (molvae optimize's default)")
    p.add_argument("--no-local", dest="local_after", action="store_const", const=None, help="no local rounds")
    p.add_argument(
        "--subspace",
        default="auto",
        choices=["auto", "active", "full"],
        help="the GP rounds search all latent dimensions or only the active ones (OptimizeConfig.subspace, default "
        "auto as in molvae optimize)",
    )
    p.add_argument("--bar", type=float, default=1.0, help="gain over the lead a cell must reach")
    p.add_argument("--jobs", type=int, default=1, help="cells run in this many worker processes")
    p.add_argument(
        "--keep",
        default=None,
        help="keep each cell's run directory (LEAD-SEED, the lead made path-safe) under this folder",
    )
    args = p.parse_args(argv)
    if args.rule is not None and args.rule < 1:
        p.error(f"--rule takes a number of leads >= 1, got {args.rule}")
    names = rule_leads(args.rule) if args.rule is not None else (args.leads or "celecoxib").split(",")
    try:
        for name in names:  # a typo stops here, not inside a worker
            lead_config(name, 0, args)
        parse_objective(args.objective)
    except MolvaeError as exc:
        p.error(str(exc))
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    jobs = [(n, s) for n in names for s in seeds]
    if len({cell_name(n, s) for n, s in jobs}) < len(jobs):
        p.error(
            "two cells would share a --keep folder name (a lead or seed given twice, or SMILES "
            "that differ only in characters a folder name cannot hold)"
        )
    if args.keep:
        taken = [cell_name(n, s) for n, s in jobs if (Path(args.keep) / cell_name(n, s)).exists()]
        if taken:  # a kept run is not resumed: its settings may differ
            p.error(f"--keep {args.keep} already holds {', '.join(taken)}; use another folder")
    print(
        f"leads: {', '.join(names)}; {args.objective} >= lead + {args.bar:g} at similarity >= {args.min_similarity:g}, "
        f"{args.budget} calls, {args.max_rounds} rounds, local rounds "
        f"{'every ' + str(args.local_after) + ' stalled rounds' if args.local_after else 'off'}",
        flush=True,
    )
    print(
        f"{'lead':<16} {'seed':>4} {'lead':>7} {'best':>7} {'gain':>6} {'min sim':>7} {'calls':>5} {'rounds':>6} "
        f"{'stop':<10} {'wall_s':>7}  best molecule (source)"
    )

    def show(c: dict) -> None:
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(
            f"{c['lead']:<16} {c['seed']:>4} {c['lead_score']:>7.2f} {fmt(c['best']):>7} {fmt(c['gain']):>6} "
            f"{fmt(c['min_similarity_reported']):>7} {c['calls']:>5} {c['rounds']:>6} {c['stop_reason'] or '-':<10} "
            f"{c['wall_s']:>7}  {c['best_smiles']} ({c['best_source']})",
            flush=True,
        )

    cells = []
    try:
        if args.jobs <= 1:
            model = MolVAE.load(args.model, device="cpu")
            for n, s in jobs:
                cells.append(run_cell(model, n, s, args))
                show(cells[-1])
        else:
            with ProcessPoolExecutor(
                args.jobs,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=exit_with_parent,
                initargs=(os.getpid(),),
            ) as pool:
                futures = [pool.submit(_cell_in_worker, args.model, n, s, args) for n, s in jobs]
                try:
                    for f in futures:  # in submission order: the table reads lead by lead
                        cells.append(f.result())
                        show(cells[-1])
                finally:  # a failed cell: queued ones must not start (running ones finish)
                    for f in futures:
                        f.cancel()
    except MolvaeError as exc:
        n, s = jobs[len(cells)]
        print(f"bench_lead: cell {n}/seed {s} failed: {exc}", file=sys.stderr)
        return 1
    summary = summarize(cells, args.bar, args.min_similarity)
    print(
        f"\nmean gain {summary['mean_gain']}, lowest {summary['min_gain']}; {summary['met']}/{summary['cells']} cells "
        f"gain >= {args.bar:g} with every reported molecule at similarity >= {args.min_similarity:g}"
    )
    print(
        json.dumps(
            {
                "objective": args.objective,
                "min_similarity": args.min_similarity,
                "budget": args.budget,
                "max_rounds": args.max_rounds,
                "local_after": args.local_after,
                "summary": summary,
                "cells": cells,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
