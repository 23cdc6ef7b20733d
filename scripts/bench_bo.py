"""Benchmark latent-space optimization: objective x method x seed at a fixed oracle budget.

Prints best and top-10 mean (feasible molecules) per cell, then the per-round
timing of BO (GP fit + acquisition + decode) with 1,000 observed points at
latent size 128 (random latents and scores; decoding with a randomly
initialized decoder of the given model's architecture at latent size 128).
The last printed line is one JSON object with every figure.

    python scripts/bench_bo.py --model runs/x --budget 200 --seeds 0,1,2 --objectives qed,esol
    python scripts/bench_bo.py --budget 500 --seeds 0,1,2 --jobs 2   # cells in 2 worker processes
    python scripts/bench_bo.py --objectives esol --range mw=200:450 --alerts   # drug-like solubility
    python scripts/bench_bo.py --objectives qed --seeds 0-2 --baseline-seeds 0-29   # baselines on 30 seeds

Unconstrained ESOL is exploitable (its linear model rewards long N/O chains without
bound); ``--range`` and ``--alerts`` put every cell, baselines included, under the same
feasibility rules, and best / top-10 count feasible molecules only. A molecule that fails
them costs no oracle call (it is recorded, not scored) unless ``--score-infeasible``.

Each cell's rounds run on one torch thread (OptimizeConfig.threads), so ``--jobs``
up to the number of cores runs cells side by side without oversubscription.
After the cells, a summary gives the mean over seeds per objective and method,
and whether each BO method beat both random baselines on mean best and mean top-10.
A baseline cell takes seconds and a BO cell minutes, so ``--baseline-seeds`` can run the
baselines on more seeds: their means are then estimates of what random sampling and
screening reach on average, not three draws that may be lucky or unlucky (QED at 500
calls: screening's best on seeds 0-2 averaged 0.9478, on seeds 0-29 0.9469).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

from molvae.errors import MolvaeError
from molvae.model import MolVAE, SequenceVAE
from molvae.optimization import (
    Constraints,
    ObjectiveError,
    OptimizeConfig,
    Optimizer,
    fit_gp,
    parse_range,
    propose_latents,
)
from molvae.optimization.config import SUBSPACES, saved_settings
from molvae.optimization.gp import gp_window_index

METHODS = ("bo", "turbo", "prior", "screen")
BASELINES = ("prior", "screen")
_MODELS: dict[str, MolVAE] = {}
# The cells run what `molvae optimize` runs unless an option says otherwise, so the two cannot drift apart.
OPTIMIZE_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(OptimizeConfig) if f.default is not dataclasses.MISSING
}


def exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Worker-process initializer: end the worker once the benchmark process is gone.

    A benchmark killed mid-run would otherwise leave its workers running their cells
    for minutes, still writing into ``--keep`` (where a rerun then finds them).
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def worker_model(model_name: str) -> MolVAE:
    """The model in a cell worker process: loaded once per process, which runs on one torch thread."""
    if model_name not in _MODELS:
        torch.set_num_threads(1)
        _MODELS[model_name] = MolVAE.load(model_name, device="cpu")
    return _MODELS[model_name]


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"``, ``"0-29"`` or a mix (``"0-2,7"``): distinct seeds in the order given."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi if sep else lo)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: seeds are integers >= 0, a range A-B or a comma-separated mix"
            ) from None
        if a > b:
            raise argparse.ArgumentTypeError(f"{text!r}: the range {part.strip()} is empty (A-B needs A <= B)")
        seeds += range(a, b + 1)
    return list(dict.fromkeys(seeds))


def _cell_in_worker(model_name: str, objective: str, method: str, seed: int, args) -> dict:
    """Worker-process entry: run one cell."""
    return run_cell(worker_model(model_name), objective, method, seed, args)


def cell_constraints(args) -> dict:
    """The feasibility rules every cell runs under (``--range``, ``--alerts``), as OptimizeConfig.constraints."""
    if not (args.ranges or args.alerts):
        return {}
    return Constraints(alerts=args.alerts.split(",") if args.alerts else None, ranges=dict(args.ranges)).to_dict()


STOPPING = ("budget", "max_rounds")


def check_reusable(out: Path, cfg: OptimizeConfig) -> None:
    """A kept cell may be resumed only under the settings it was run with (the stopping rules,
    budget and round limit, may change)."""
    saved = saved_settings(out)
    mine = dataclasses.asdict(cfg)
    differ = sorted(k for k in mine if k not in STOPPING and saved.get(k) != json.loads(json.dumps(mine[k])))
    if differ:
        raise SystemExit(
            f"--reuse: {out} was run with other settings ({', '.join(differ)}: "
            f"{', '.join(f'{saved.get(k)!r} now {mine[k]!r}' for k in differ)}); "
            "use another --keep folder"
        )


def run_cell(model, objective: str, method: str, seed: int, args) -> dict:
    cfg = OptimizeConfig(
        objectives=[objective],
        budget=args.budget,
        batch=args.batch,
        method=method,
        seed=seed,
        n_init=0 if method in ("prior", "screen") else args.n_init,
        decode_attempts=args.decode_attempts,
        num_restarts=args.restarts,
        raw_samples=args.raw_samples,
        gp_window=args.gp_window,
        gp_maxiter=args.gp_maxiter,
        tr_failure_tolerance=args.tr_failure_tolerance,
        subspace=args.subspace,
        density_weight=args.density_weight,
        density_quantile=args.density_quantile,
        constraints=args.constraints,
        score_infeasible=args.score_infeasible,
        max_rounds=args.max_rounds,
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) / f"{objective}-{method}-{seed}" if args.keep else Path(tmp) / "run"
        reused = bool(args.keep and args.reuse and (out / "evaluations.csv").exists())
        if reused:
            check_reusable(out, cfg)
        t = time.perf_counter()
        # A reused cell resumes its kept run: a finished run scores nothing more, an unfinished one completes.
        opt = Optimizer(model, cfg, out, resume=reused, progress=False).run()
        wall = time.perf_counter() - t
        feas = opt.feasible_table()
    scores = np.sort(feas["score"].to_numpy())[::-1]
    bo_rounds = [t for t in opt.timings if t.get("fit", 0.0) > 0]
    return {
        "objective": objective,
        "method": method,
        "seed": seed,
        "calls": opt.oracle.calls,
        "rounds": opt.round,
        "stop_reason": opt.stop_reason,
        "invalid": opt.oracle.n_invalid,
        "repeats": opt.oracle.n_repeat,
        "unscored_infeasible": opt.oracle.n_unscored,
        "best": float(scores[0]) if len(scores) else None,
        "top10_mean": float(scores[:10].mean()) if len(scores) else None,
        "wall_s": None if reused else round(wall, 2),
        "reused": reused,
        "median_round_s": round(float(np.median([t["total"] for t in bo_rounds])), 2) if bo_rounds else None,
        "top3": [float(v) for v in scores[:3]],
        "best_smiles": feas.sort_values("score", ascending=False)["smiles"].iloc[0] if len(feas) else None,
    }


def round_timing(model, n_points: int, dim: int, batch: int, args, repeats: int = 2) -> dict:
    """Seconds for GP fit, acquisition and decode of one round at ``n_points`` observations in ``dim`` dims."""
    cfg = dataclasses.replace(model.config, latent_dim=dim)
    big = MolVAE(SequenceVAE(cfg), model.vocab, device="cpu")  # random weights: decode cost only
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n_points, dim, generator=gen, dtype=torch.float64)
    Y = X[:, :5].sum(-1, keepdim=True) + 0.3 * torch.randn(n_points, 1, generator=gen, dtype=torch.float64)
    bounds = torch.stack([X.min(0).values, X.max(0).values])
    out = {}
    for threads in sorted({1, torch.get_num_threads()}):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            rows = []
            for r in range(repeats):
                torch.manual_seed(r)
                t0 = time.perf_counter()
                keep = torch.from_numpy(gp_window_index(Y.numpy(), args.gp_window))  # as the Optimizer does
                gp = fit_gp(X[keep], Y[keep], bounds, maxiter=args.gp_maxiter)
                t1 = time.perf_counter()
                z = propose_latents(
                    gp,
                    X[keep],
                    Y[keep],
                    bounds,
                    batch,
                    OptimizeConfig(objectives=["qed"], num_restarts=args.restarts, raw_samples=args.raw_samples),
                )
                t2 = time.perf_counter()
                big.decode_valid(z.float().numpy(), attempts=args.decode_attempts, seed=r)
                t3 = time.perf_counter()
                rows.append((t1 - t0, t2 - t1, t3 - t2))
            fit, acq, dec = np.median(np.array(rows), axis=0)
            out[f"threads_{threads}"] = {
                "fit_s": round(float(fit), 2),
                "acquisition_s": round(float(acq), 2),
                "decode_s": round(float(dec), 2),
                "round_s": round(float(fit + acq + dec), 2),
            }
        finally:
            torch.set_num_threads(old)
    return out


def summarize(cells: list[dict]) -> list[dict]:
    """Mean best / top-10 over seeds per (objective, method); for BO methods, whether both baselines were beaten."""
    rows = []
    for obj in dict.fromkeys(c["objective"] for c in cells):
        means = {}
        for method in dict.fromkeys(c["method"] for c in cells if c["objective"] == obj):
            group = [c for c in cells if c["objective"] == obj and c["method"] == method and c["best"] is not None]
            if not group:
                continue
            best = np.array([c["best"] for c in group])
            top = np.array([c["top10_mean"] for c in group])
            means[method] = (best.mean(), top.mean())
            rows.append(
                {
                    "objective": obj,
                    "method": method,
                    "seeds": len(group),
                    "best_mean": round(float(best.mean()), 3),
                    "best_sd": round(float(best.std()), 3),
                    "top10_mean": round(float(top.mean()), 3),
                    "top10_sd": round(float(top.std()), 3),
                }
            )
        for row in rows:
            if row["objective"] == obj and row["method"] not in BASELINES:
                # unrounded means on both sides: a rounded 0.948 must not "beat" a baseline's 0.9478
                mine = means[row["method"]]
                base = [means[b] for b in BASELINES if b in means]
                row["beats_baselines"] = bool(all(mine[0] > b[0] and mine[1] > b[1] for b in base)) if base else None
    return rows


def print_summary(rows: list[dict]) -> None:
    print(
        f"\n{'objective':<16} {'method':<7} {'seeds':>5} {'best (mean±sd)':>16} {'top10 (mean±sd)':>16}  beats "
        f"both baselines"
    )
    for r in rows:
        verdict = {True: "yes", False: "NO", None: "-"}[r.get("beats_baselines")]
        print(
            f"{r['objective']:<16} {r['method']:<7} {r['seeds']:>5} {r['best_mean']:>9.3f}±{r['best_sd']:<6.3f} "
            f"{r['top10_mean']:>9.3f}±{r['top10_sd']:<6.3f}  {verdict if r['method'] not in BASELINES else ''}"
        )


def build_parser() -> argparse.ArgumentParser:
    """The command line; the optimizer settings default to OptimizeConfig's."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="zinc-smiles", help="bundled model name or model directory")
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--seeds", type=parse_seeds, default=[0], help="e.g. 0,1,2 or 0-2 (default 0)")
    p.add_argument(
        "--baseline-seeds",
        type=parse_seeds,
        default=None,
        help="seeds of the prior and screen cells (default: --seeds); they are cheap, so more seeds "
        "make their means, against which the BO methods are judged, precise",
    )
    p.add_argument("--objectives", default="qed,esol")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--batch", type=int, default=OPTIMIZE_DEFAULTS["batch"])
    p.add_argument(
        "--n-init",
        type=int,
        default=OPTIMIZE_DEFAULTS["n_init"],
        help="random MOSES molecules scored before the first BO round (OptimizeConfig.n_init, as in "
        "molvae optimize; the tables of docs/BO_BENCHMARK.md before session 25 used 20)",
    )
    p.add_argument("--decode-attempts", type=int, default=OPTIMIZE_DEFAULTS["decode_attempts"])
    p.add_argument("--restarts", type=int, default=OPTIMIZE_DEFAULTS["num_restarts"])
    p.add_argument("--raw-samples", type=int, default=OPTIMIZE_DEFAULTS["raw_samples"])
    p.add_argument("--timing-points", type=int, default=1000)
    p.add_argument(
        "--gp-window",
        type=int,
        default=OPTIMIZE_DEFAULTS["gp_window"],
        help="points the GP is fit on (OptimizeConfig.gp_window)",
    )
    p.add_argument(
        "--gp-maxiter",
        type=int,
        default=OPTIMIZE_DEFAULTS["gp_maxiter"],
        help="L-BFGS iterations per GP fit (OptimizeConfig.gp_maxiter)",
    )
    p.add_argument(
        "--tr-failure-tolerance",
        type=int,
        default=OPTIMIZE_DEFAULTS["tr_failure_tolerance"],
        help="turbo: failed rounds before the trust region halves (OptimizeConfig.tr_failure_tolerance)",
    )
    p.add_argument(
        "--density-weight",
        type=float,
        default=OPTIMIZE_DEFAULTS["density_weight"],
        help="bo/turbo: log acquisition lost per nat of prior density below the floor (OptimizeConfig.density_weight)",
    )
    p.add_argument(
        "--density-quantile",
        type=float,
        default=OPTIMIZE_DEFAULTS["density_quantile"],
        help="with --density-weight: the floor's quantile (OptimizeConfig.density_quantile)",
    )
    p.add_argument(
        "--subspace",
        default=OPTIMIZE_DEFAULTS["subspace"],
        choices=SUBSPACES,
        help="bo/turbo: all latent dimensions or only the active ones (OptimizeConfig.subspace, default auto as in "
        "molvae optimize)",
    )
    p.add_argument(
        "--range",
        dest="ranges",
        action="append",
        default=[],
        metavar="PROP=LOW:HIGH",
        help="every cell: molecules outside this property range are infeasible (e.g. mw=200:450); repeatable",
    )
    p.add_argument(
        "--alerts",
        nargs="?",
        const="PAINS,BRENK",
        default=None,
        help="every cell: molecules matching structural alerts are infeasible (catalogs, default PAINS,BRENK)",
    )
    p.add_argument(
        "--score-infeasible",
        action="store_true",
        help="spend oracle calls on molecules that fail --range/--alerts (OptimizeConfig.score_infeasible; "
        "by default they are recorded without a call)",
    )
    p.add_argument(
        "--max-rounds",
        type=int,
        default=None,
        help="every cell stops after this many rounds, budget left or not (OptimizeConfig.max_rounds); "
        "bounds the wall time of cells whose proposals mostly fail --range/--alerts",
    )
    p.add_argument("--timing-dim", type=int, default=128)
    p.add_argument("--skip-timing", action="store_true")
    p.add_argument("--jobs", type=int, default=1, help="cells run in this many worker processes")
    p.add_argument(
        "--keep", default=None, help="keep each cell's run directory (OBJECTIVE-METHOD-SEED) under this folder"
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="with --keep: resume cells already in that folder instead of rerunning them (wall_s is then blank); "
        "a cell run with other settings (budget and round limit aside) is refused",
    )
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.reuse and not args.keep:
        p.error("--reuse needs --keep")
    try:
        args.ranges = [parse_range(r) for r in args.ranges]
        args.constraints = cell_constraints(args)  # once: a typo stops here, not inside a worker
    except ObjectiveError as exc:
        p.error(str(exc))
    model = MolVAE.load(args.model, device="cpu")
    baseline_seeds = args.baseline_seeds or args.seeds
    cells = []
    print(
        f"{'objective':<16} {'method':<7} {'seed':>4} {'calls':>5} {'rounds':>6} {'invalid':>7} {'repeats':>7} "
        f"{'best':>8} {'top10':>8} {'wall_s':>7}"
    )
    fmt = lambda v: f"{v:8.3f}" if v is not None else f"{'-':>8}"  # noqa: E731

    def show(c: dict) -> None:
        print(
            f"{c['objective']:<16} {c['method']:<7} {c['seed']:>4} {c['calls']:>5} {c['rounds']:>6} {c['invalid']:>7} "
            f"{c['repeats']:>7} {fmt(c['best'])} {fmt(c['top10_mean'])} "
            f"{c['wall_s'] if c['wall_s'] is not None else 'reused':>7}",
            flush=True,
        )

    jobs = [
        (o, m, s)
        for o in args.objectives.split(",")
        for m in args.methods.split(",")
        for s in (baseline_seeds if m in BASELINES else args.seeds)
    ]
    # Longest cells first (BO methods, penalized logP slowest), so worker processes finish together.
    cost = lambda j: (j[1] in BASELINES, j[0] != "penalized_logp")  # noqa: E731
    submit = sorted(jobs, key=cost)
    failure = None
    if args.jobs <= 1:
        for o, m, s in submit:
            try:
                cells.append(run_cell(model, o, m, s, args))
            except MolvaeError as exc:
                failure = ((o, m, s), exc, len(submit) - len(cells) - 1)
                break
            show(cells[-1])
    else:
        with ProcessPoolExecutor(
            args.jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = {pool.submit(_cell_in_worker, args.model, o, m, s, args): (o, m, s) for o, m, s in submit}
            for f in as_completed(futures):
                if f.cancelled():
                    continue
                try:
                    cells.append(f.result())
                except BaseException as exc:  # SystemExit too (check_reusable): queued cells must not start
                    # Stop starting cells; the ones running finish and are shown (and kept).
                    cancelled = sum(g.cancel() for g in futures)
                    if not isinstance(exc, MolvaeError):
                        raise
                    failure = failure or (futures[f], exc, cancelled)
                    continue
                show(cells[-1])
    if failure is not None:
        (o, m, s), exc, cancelled = failure
        kept = f"; finished cells are kept in {args.keep} (rerun with --reuse)" if args.keep else ""
        print(f"bench_bo: cell {o}/{m}/seed {s} failed: {exc}. {cancelled} cell(s) not started{kept}", file=sys.stderr)
        return 1
    order = {j: i for i, j in enumerate(jobs)}
    cells.sort(key=lambda c: order[(c["objective"], c["method"], c["seed"])])
    summary = summarize(cells)
    print_summary(summary)
    timing = None
    if not args.skip_timing:
        timing = round_timing(model, args.timing_points, args.timing_dim, args.batch, args)
        for k, v in timing.items():
            print(
                f"round timing ({args.timing_points} points, latent {args.timing_dim}, q={args.batch}, {k}): "
                f"fit {v['fit_s']} s + acquisition {v['acquisition_s']} s + decode {v['decode_s']} s = {v['round_s']} s"
            )
    print(
        json.dumps(
            {
                "budget": args.budget,
                "constraints": args.constraints,
                "summary": summary,
                "latent_dim": model.config.latent_dim,
                "cells": cells,
                "timing": timing,
                "timing_points": args.timing_points,
                "timing_dim": args.timing_dim,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
