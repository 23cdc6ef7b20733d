"""``molvae optimize``: search the latent space for molecules with target properties (BoTorch BO).

Objectives (higher is better): esol, qed, logp, penalized_logp, sa (negated), tpsa, mw, ...;
target(logp=2.5,tpsa=70); range(mw=250:450); weighted sums such as 0.7*qed+0.3*esol;
or any callable taking a list of SMILES: module:function (importable) or path/to/file.py:function.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from molvae.cli.commands import add_command
from molvae.cli.common import add_model_arguments, add_prior_argument, add_smiles_column_argument, load_model
from molvae.folders import BEST_FILE, CONFIG_FILE, PARETO_FILE
from molvae.optimization.acquisition import ACQUISITIONS
from molvae.optimization.bo import OptimizeConfig

log = logging.getLogger(__name__)


def _range(text: str) -> tuple[str, tuple[float, float]]:
    from molvae.errors import ObjectiveError
    from molvae.optimization.constraints import parse_range

    try:
        return parse_range(text)
    except ObjectiveError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "optimize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    obj = p.add_mutually_exclusive_group()
    obj.add_argument("--objective", help="one objective (see above)")
    obj.add_argument("--objectives", help="two or three comma-separated objectives: Pareto optimization (qLogNEHVI)")
    p.add_argument("--out", "-o", required=True, help="run directory (evaluations.csv, best.csv, progress.png, state.json)")
    p.add_argument("--budget", type=int, default=None, help="oracle calls: new valid molecules scored (default 500)")
    p.add_argument("--batch", type=int, default=None, help="molecules proposed per round (default 10)")
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument("--method", default=None, choices=["auto", "bo", "turbo", "prior", "screen"],
                   help="bo: GP + acquisition in the data box; turbo: trust region (auto picks it for latents >= 64); "
                        "prior / screen: baselines (default auto)")
    p.add_argument("--acquisition", default=None, choices=list(ACQUISITIONS),
                   help="with one objective: " + ", ".join(f"{name} ({a.description})" for name, a in ACQUISITIONS.items())
                        + f" (default {OptimizeConfig.acquisition}); several objectives use qLogNEHVI")
    p.add_argument("--init", dest="init_file", default=None,
                   help="molecule file of initial molecules (.csv, .tsv, .sdf, .smi, .parquet); with a column or SD data "
                        "field per objective (score or score_<objective> holding the objective's value, or a "
                        "property column named as the objective, such as qed or sa, as `molvae properties` writes "
                        "it: sa is raw SA and is negated), their scores are used as given and cost no budget")
    add_smiles_column_argument(p, "the --init file")
    p.add_argument("--n-init", type=int, default=None, help="random MOSES training molecules scored first (default 100)")
    p.add_argument("--gp-window", type=int, default=None,
                   help="points the GP is fit on, half best, half latest (default 512)")
    p.add_argument("--tr-failure-tolerance", type=int, default=None,
                   help="turbo: failed rounds before the trust region halves (0, the default: TuRBO's "
                        "ceil(searched dimensions / batch), 3 for the bundled model's 26 active dimensions at batch 10; "
                        "in all 128 dimensions 4 gave a better QED top-10 than 13, see docs/BO_BENCHMARK.md)")
    p.add_argument("--subspace", default=None, choices=["auto", "active", "full"],
                   help="bo/turbo: the GP and the acquisition work only in the latent dimensions the encoder uses "
                        "(active; the bundled zinc-smiles uses 26 of 128) or in all of them (full). auto, the "
                        "default: active, or full with a warning where they cannot be measured "
                        "(docs/BO_BENCHMARK.md)")
    add_prior_argument(p, default=None)
    p.add_argument("--decode-attempts", type=int, default=None, help="default 5")
    p.add_argument("--decode-temperature", type=float, default=None, help="default 0.5")
    p.add_argument("--similar-to", default=None, help="drug name or SMILES the molecules must stay similar to")
    p.add_argument("--min-similarity", type=float, default=None, help="minimum Tanimoto similarity (Morgan r=2)")
    p.add_argument("--similarity-gp", action="store_true", default=None,
                   help="with --min-similarity and qLogEI: model the similarity with a second GP and use it as "
                        "the acquisition's constraint (slower rounds; docs/BO_BENCHMARK.md)")
    p.add_argument("--score-infeasible", action="store_true", default=None,
                   help="spend oracle calls on molecules that fail a constraint (by default they are "
                        "recorded as infeasible without being scored and cost nothing)")
    p.add_argument("--alerts", nargs="?", const="PAINS,BRENK", default=None,
                   help="reject molecules matching structural alerts (catalogs, default PAINS,BRENK)")
    p.add_argument("--range", dest="ranges", action="append", type=_range, default=[], metavar="PROP=LOW:HIGH",
                   help="feasible property range, repeatable (e.g. --range mw=200:500)")
    p.add_argument("--restarts", type=int, default=None, help="acquisition optimizer restarts (default 4)")
    p.add_argument("--raw-samples", type=int, default=None, help="random points the restarts are picked from (default 128)")
    p.add_argument("--patience", type=int, default=None,
                   help="stop after this many rounds without a new molecule to score (default 20)")
    p.add_argument("--max-rounds", type=int, default=None,
                   help="stop after this many rounds even with budget left (with constraints, most proposals "
                        "may cost no oracle call, so the budget alone does not bound the run's time)")
    p.add_argument("--local-after", type=int, default=None, metavar="N",
                   help="with --min-similarity: every N rounds in a row that scored nothing, one round decodes "
                        "around the best feasible molecules instead of asking the GP (default 5)")
    p.add_argument("--no-local", action="store_true", help="never: the GP proposes every round")
    p.add_argument("--top-k", type=int, default=None, help="molecules in best.csv (default 20)")
    p.add_argument("--baselines", action="store_true", help="also run prior sampling and training-set screening")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its saved settings (only --budget and --max-rounds may "
                        "change; nothing is scored twice)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


# Options that set a run's OptimizeConfig field (dest -> field). They default to None, so that a
# new run takes OptimizeConfig's defaults and a resume knows exactly which ones were given.
_RUN_SETTINGS = {
    "batch": "batch", "seed": "seed", "method": "method", "acquisition": "acquisition", "init_file": "init_file",
    "smiles_column": "init_smiles_column",
    "n_init": "n_init", "gp_window": "gp_window", "tr_failure_tolerance": "tr_failure_tolerance",
    "subspace": "subspace", "prior": "prior",
    "decode_attempts": "decode_attempts", "decode_temperature": "decode_temperature",
    "similarity_gp": "similarity_gp", "score_infeasible": "score_infeasible", "restarts": "num_restarts",
    "raw_samples": "raw_samples", "patience": "patience", "local_after": "local_after", "top_k": "top_k",
}


def _run_settings(args: argparse.Namespace) -> dict:
    """The OptimizeConfig fields given on the command line (field -> value)."""
    from molvae.errors import ConfigError

    given = {field: getattr(args, dest) for dest, field in _RUN_SETTINGS.items() if getattr(args, dest) is not None}
    if args.no_local:
        if "local_after" in given:
            raise ConfigError("give --local-after N or --no-local, not both")
        given["local_after"] = None
    return given


def _given_on_resume(args: argparse.Namespace, saved: dict) -> tuple[dict, dict, dict]:
    """(saved view, given, option names) of the run settings passed with --resume, for check_resume_settings."""
    from molvae.optimization import Constraints
    from molvae.optimization.constraints import range_table

    view, given = dict(saved), {}
    names = {"budget": "--budget", "max_rounds": "--max-rounds"}
    names.update({field: "--init" if dest == "init_file" else "--" + dest.replace("_", "-")
                  for dest, field in _RUN_SETTINGS.items()})
    given.update(_run_settings(args))
    if "local_after" in given and given["local_after"] is None:
        names["local_after"] = "--no-local"
    # the constraints piece by piece, resolved as a new run would resolve them
    rules = Constraints.from_dict(saved.get("constraints") or {})
    pieces = {
        "--similar-to": (args.similar_to, lambda v: Constraints(reference=v).reference, rules.reference),
        "--min-similarity": (args.min_similarity, float, rules.min_similarity),
        "--alerts": (args.alerts, lambda v: v.split(","), list(rules.alerts) if rules.alerts else None),
        "--range": (args.ranges or None, lambda v: {k: list(r) for k, r in range_table(v).items()},
                    {k: list(r) for k, r in rules.ranges.items()} or None),
    }
    for option, (value, normalize, before) in pieces.items():
        if value is not None:
            given[option], view[option], names[option] = normalize(value), before, option
    return view, given, names


def run(args: argparse.Namespace) -> int:
    from molvae.optimization import Optimizer, load_baseline_tables, run_baselines

    config = prepare(args)
    out = Path(args.out)
    model = load_model(args)
    progress = False if args.no_progress else None
    opt = Optimizer(model, config, out, resume=args.resume, progress=progress).run()
    if args.baselines:
        run_baselines(model, dataclasses.replace(config, method="bo"), out, objectives=opt.objectives,
                      resume=args.resume, progress=progress)
        opt.write_reports(baselines=load_baseline_tables(out))
    _print_summary(out, opt, config)
    return 0


def prepare(args: argparse.Namespace, replacing: bool = False) -> OptimizeConfig:
    """The run's OptimizeConfig from the options (and, with --resume, the saved settings), every check made
    before the model loads or anything is written. ``replacing``: a run in --out is removed before this one
    starts (``molvae demo --overwrite``), so it is no reason to refuse."""
    from molvae.errors import ConfigError, MolvaeError
    from molvae.optimization import parse_objectives
    from molvae.optimization.bo import check_new_run_dir, check_resume_settings, saved_settings

    out = Path(args.out)
    if args.resume and (out / CONFIG_FILE).exists():
        saved = saved_settings(out)
        try:
            OptimizeConfig.from_dict(saved)
        except ConfigError as exc:  # name the file: the user has to edit it (or start over)
            raise ConfigError(f"{out / 'config.json'}: {exc}") from None
        # stopping rules, like the budget: a resumed run may go further
        given = {field: value for field, value in (("budget", args.budget), ("max_rounds", args.max_rounds))
                 if value is not None}
        try:
            config = OptimizeConfig.from_dict({**saved, **given})
        except ConfigError as exc:  # a bad value on the command line, not in the file
            raise ConfigError(" ".join(f"--{f.replace('_', '-')} {v}" for f, v in given.items()) + f": {exc}") from None
        spec = args.objectives or args.objective
        if spec and [o.name for o in parse_objectives(spec)] != [o.name for o in parse_objectives(config.objectives)]:
            flag = "--objectives" if args.objectives else "--objective"
            raise MolvaeError(f"{out} optimizes {', '.join(config.objectives)}, not {spec}; drop {flag} to resume")
        check_resume_settings(out, *_given_on_resume(args, saved))
    else:
        if args.resume:
            where = (f"{out} does not exist" if not out.exists() else
                     f"{out} holds no saved run (no config.json): it was stopped before its first save")
            raise MolvaeError(f"nothing to resume: {where}; the same command without --resume starts it")
        if not replacing:
            check_new_run_dir(out)
        spec = args.objectives or args.objective
        if not spec:
            raise MolvaeError("give --objective (or --objectives for several)")
        objectives = parse_objectives(spec)  # fail on a bad objective before loading the model
        if args.objective and len(objectives) > 1:
            raise MolvaeError("several objectives: use --objectives")
        constraints = {}
        if args.similar_to or args.min_similarity is not None or args.alerts or args.ranges:
            from molvae.drugs import resolve_molecule
            from molvae.optimization import Constraints
            from molvae.optimization.constraints import range_table

            ref_name, ref = resolve_molecule(args.similar_to) if args.similar_to else (None, None)
            constraints = Constraints(reference=ref, reference_name=ref_name, min_similarity=args.min_similarity,
                                      alerts=args.alerts.split(",") if args.alerts else None,
                                      ranges=range_table(args.ranges)).to_dict()
        config = OptimizeConfig(
            objectives=[o.name for o in objectives], budget=500 if args.budget is None else args.budget,
            max_rounds=args.max_rounds, constraints=constraints, **_run_settings(args),
        ).validate()
    from molvae.tables import check_output_dir

    check_output_dir(out, create=False)
    return config


def _print_summary(out: Path, opt, config) -> None:
    """The closing lines: calls, rounds, what was not scored, why the run stopped, the best molecules."""
    state = opt.state()
    best = state["best"]
    # Shown without constraints too: an objective that returns NaN marks molecules infeasible.
    infeasible = f", {state['n_infeasible']} infeasible" if opt.constraints.active or state["n_infeasible"] else ""
    print(f"{out}: {_count(state['calls'], 'oracle call')} in {_count(state['round'], 'round')} "
          f"({_count(state['n_invalid'], 'invalid decode')}, {_count(state['n_repeat'], 'repeat')} not scored{infeasible})" + (f"; best {best:.4g}" if best is not None else "")
          + (f"; stopped at the round limit with {config.budget - state['calls']} calls left"
             if state["stop_reason"] == "max_rounds" else "")
          + (f"; stopped after {config.patience} rounds in a row that scored nothing, with "
             f"{config.budget - state['calls']} calls left" if state["stop_reason"] == "patience" else ""))
    _print_top(out, opt)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _print_top(out, opt, n: int = 5) -> None:
    """The first rows of best.csv (or pareto.csv with several objectives), so a run can be judged without opening files."""
    import pandas as pd

    multi = len(opt.oracle.score_columns) > 1
    name = PARETO_FILE if multi else BEST_FILE
    path = out / name
    if not path.is_file():
        return
    table = pd.read_csv(path)
    if table.empty:
        print(f"no feasible molecule was scored; {out / 'evaluations.csv'} lists every decode with its status")
        return
    cols = ["smiles", *opt.oracle.score_columns] + (["similarity"] if opt.constraints.reference else [])
    shown = table[cols].head(n)
    print(f"{'Pareto front' if multi else 'best molecules'} ({len(table)} in {name}"
          + (f", first {n} shown" if len(table) > n else "") + "):")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", max_colwidth=70))
