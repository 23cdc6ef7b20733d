"""``molvae optimize``: search the latent space for molecules with target properties (BoTorch BO).

Objectives (higher is better; each property below, an ADMET-AI endpoint admet:<endpoint>);
target(logp=2.5,tpsa=70); range(mw=250:450); weighted sums such as 0.7*qed+0.3*esol or
solubility+0.5*admet:hERG; or any callable taking a list of SMILES: module:function (importable) or
path/to/file.py:function.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd

from molvae.chemistry import PROPERTIES, admet
from molvae.cli.commands import add_command
from molvae.cli.common import (
    add_config_options,
    add_model_arguments,
    add_prior_argument,
    add_smiles_column_argument,
    load_model,
)
from molvae.drugs import resolve_molecule
from molvae.errors import ConfigError, MolvaeError
from molvae.folders import BEST_FILE, CONFIG_FILE, PARETO_FILE
from molvae.optimization import Optimizer, load_baseline_tables, run_baselines
from molvae.optimization.acquisition import ACQUISITIONS
from molvae.optimization.config import OptimizeConfig, resume_config
from molvae.optimization.constraints import Constraints, parse_range, range_table
from molvae.optimization.objectives import ObjectiveError, parse_objectives
from molvae.optimization.store import check_new_run_dir
from molvae.tables import check_output_dir

log = logging.getLogger(__name__)


def _range(text: str) -> tuple[str, tuple[float, float]]:
    try:
        return parse_range(text)
    except ObjectiveError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# The options that set OptimizeConfig fields, by where they appear in --help: (flag, field, type, help[,
# argparse keywords]). Defaults and choices come from OptimizeConfig (cli.common.add_config_options).
_SETTINGS: dict[str, list[tuple[Any, ...]]] = {
    "run": [
        ("--budget", "budget", int, "oracle calls: new valid molecules scored"),
        ("--batch", "batch", int, "molecules proposed per round"),
        ("--seed", "seed", int, "random seed (rounds are seeded by seed and round)"),
        (
            "--method",
            "method",
            str,
            "bo: GP + acquisition in the data box; turbo: trust region (auto picks it for "
            "latents >= 64); prior / screen: baselines",
        ),
        (
            "--acquisition",
            "acquisition",
            str,
            "with one objective: "
            + ", ".join(f"{name} ({a.description})" for name, a in ACQUISITIONS.items())
            + "; several objectives use qLogNEHVI",
        ),
        (
            "--init",
            "init_file",
            str,
            "molecule file of initial molecules (.csv, .tsv, .sdf, .smi, .parquet); with a column or SD data field per "
            "objective (score or score_<objective> holding the objective's value, or a property column named as the "
            "objective, such as qed or sa, as `molvae properties` writes it: sa is raw SA and is negated), their "
            "scores are used as given and cost no budget (by default the initial design is --n-init molecules)",
        ),
    ],
    "surrogate": [
        ("--n-init", "n_init", int, "random MOSES training molecules scored first"),
        ("--gp-window", "gp_window", int, "points the GP is fit on, half best, half latest"),
        (
            "--tr-failure-tolerance",
            "tr_failure_tolerance",
            int,
            "turbo: failed rounds before the trust region halves (0: TuRBO's ceil(searched dimensions / batch), 3 for "
            "the bundled model's 26 active dimensions at batch 10; in all 128 dimensions 4 gave a better QED top-10 "
            "than 13, see docs/BO_BENCHMARK.md)",
        ),
        (
            "--subspace",
            "subspace",
            str,
            "bo/turbo: the GP and the acquisition work only in the latent dimensions the encoder uses (active; the "
            "bundled zinc-smiles uses 26 of 128) or in all of them (full); auto: active, or full with a warning where "
            "they cannot be measured (docs/BO_BENCHMARK.md)",
        ),
    ],
    "density": [
        (
            "--density-weight",
            "density_weight",
            float,
            "bo/turbo: a proposal whose latent prior density is below --density-quantile of the scored molecules' "
            "codes loses this much log acquisition per nat below it, so proposals stay where real molecules' codes "
            "lie and fewer decode to nothing valid; 0: off (docs/BO_BENCHMARK.md)",
            {"metavar": "λ"},
        ),
        (
            "--density-quantile",
            "density_quantile",
            float,
            "with --density-weight: the floor, as a quantile of the prior log densities of the scored codes",
        ),
    ],
    "decoding": [
        (
            "--decode-attempts",
            "decode_attempts",
            int,
            "decodes of each proposed code, the most frequent valid molecule kept",
        ),
        ("--decode-temperature", "decode_temperature", float, "sampling temperature of those decodes"),
    ],
    "constraints": [
        (
            "--similarity-gp",
            "similarity_gp",
            bool,
            "with --min-similarity and qLogEI: model the similarity with a second GP and use it as the acquisition's "
            "constraint (slower rounds; docs/BO_BENCHMARK.md)",
        ),
        (
            "--score-infeasible",
            "score_infeasible",
            bool,
            "spend oracle calls on molecules that fail a constraint (by default they are recorded as infeasible "
            "without being scored and cost nothing)",
        ),
    ],
    "rounds": [
        ("--restarts", "num_restarts", int, "acquisition optimizer restarts", {"metavar": "RESTARTS"}),
        ("--raw-samples", "raw_samples", int, "random points the restarts are picked from"),
        ("--acq-maxiter", "acq_maxiter", int, "iterations of the acquisition optimizer (scipy) from each restart"),
        ("--patience", "patience", int, "stop after this many rounds without a new molecule to score"),
        (
            "--max-rounds",
            "max_rounds",
            int,
            "stop after this many rounds even with budget left (by default no limit; with constraints, most "
            "proposals may cost no oracle call, so the budget alone does not bound the run's time)",
        ),
        (
            "--local-after",
            "local_after",
            int,
            "with --min-similarity: every N rounds in a row that scored nothing, one round decodes around the best "
            "feasible molecules instead of asking the GP",
            {"metavar": "N"},
        ),
    ],
    "report": [("--top-k", "top_k", int, "molecules in best.csv")],
}
# Two run settings are set by options shared with other commands (cli.common): field -> (flag, dest).
_SHARED = {"init_smiles_column": ("--smiles-column", "smiles_column"), "prior": ("--prior", "prior")}
# Every run setting's option (field -> flag, for --resume's messages) and where argparse stores it.
_FLAGS = {field: flag for rows in _SETTINGS.values() for flag, field, *_ in rows} | {
    field: flag for field, (flag, _) in _SHARED.items()
}
_DESTS = {field: _SHARED[field][1] if field in _SHARED else field for field in _FLAGS}


def _objectives_help() -> str:
    """The objectives --help lists, from the property table and ADMET-AI's endpoint table."""
    width = max(len(name) for name in PROPERTIES)
    lines = ["objectives:"]
    for name, prop in PROPERTIES.items():
        needs = f" [{admet.INSTALL_HINT}]" if prop.extra else ""
        lines.append(f"  {name:<{width}}  {prop.objective_description}{needs}")
    lines.append(f"  admet:<endpoint>  an ADMET-AI endpoint, maximized in its direction [{admet.INSTALL_HINT}]:")
    groups = {1.0: "higher is better", -1.0: "lower is better (negated)", 0.0: "no direction: target()/range() only"}
    for direction, label in groups.items():
        keys = [key for key, (d, _) in admet.DIRECTIONS.items() if d == direction]
        lines.append(textwrap.fill(", ".join(keys), 100, initial_indent=f"    {label}: ", subsequent_indent="      "))
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "optimize",
        description=__doc__,
        epilog=_objectives_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(p)
    obj = p.add_mutually_exclusive_group()
    obj.add_argument("--objective", help="one objective (see above)")
    obj.add_argument("--objectives", help="two or three comma-separated objectives: Pareto optimization (qLogNEHVI)")
    p.add_argument(
        "--out", "-o", required=True, help="run directory (evaluations.csv, best.csv, progress.png, state.json)"
    )
    settings = functools.partial(add_config_options, p, OptimizeConfig, choices=True)
    settings(_SETTINGS["run"])
    add_smiles_column_argument(p, "the --init file")
    settings(_SETTINGS["surrogate"])
    add_prior_argument(p, default=None)
    settings(_SETTINGS["density"])
    settings(_SETTINGS["decoding"])
    p.add_argument("--similar-to", default=None, help="drug name or SMILES the molecules must stay similar to")
    p.add_argument("--min-similarity", type=float, default=None, help="minimum Tanimoto similarity (Morgan r=2)")
    settings(_SETTINGS["constraints"])
    p.add_argument(
        "--alerts",
        nargs="?",
        const="PAINS,BRENK",
        default=None,
        help="reject molecules matching structural alerts (catalogs, default PAINS,BRENK)",
    )
    p.add_argument(
        "--range",
        dest="ranges",
        action="append",
        type=_range,
        default=[],
        metavar="PROP=LOW:HIGH",
        help="feasible property range, repeatable (e.g. --range mw=200:500)",
    )
    settings(_SETTINGS["rounds"])
    p.add_argument("--no-local", action="store_true", help="never: the GP proposes every round")
    settings(_SETTINGS["report"])
    p.add_argument("--baselines", action="store_true", help="also run prior sampling and training-set screening")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out with its saved settings (only --budget and --max-rounds may "
        "change; nothing is scored twice)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The OptimizeConfig fields given on the command line (field -> value)."""
    given = {field: getattr(args, dest) for field, dest in _DESTS.items() if getattr(args, dest) is not None}
    if args.no_local:
        if "local_after" in given:
            raise ConfigError("give --local-after N or --no-local, not both")
        given["local_after"] = None
    return given


def _resume_request(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """(given, option names) of a --resume, for :func:`molvae.optimization.config.resume_config`: the run
    settings and objectives given, and the constraints piece by piece, as the options spell them."""
    given, names = _run_settings(args), dict(_FLAGS)
    if "local_after" in given and given["local_after"] is None:
        names["local_after"] = "--no-local"
    spec = args.objectives or args.objective
    if spec:
        given["objectives"] = spec
    pieces = {
        "reference": ("--similar-to", args.similar_to),
        "min_similarity": ("--min-similarity", args.min_similarity),
        "alerts": ("--alerts", args.alerts),
        "ranges": ("--range", args.ranges or None),
    }
    for rule, (option, value) in pieces.items():
        if value is not None:
            given[f"constraints.{rule}"], names[f"constraints.{rule}"] = value, option
    return given, names


def run(args: argparse.Namespace) -> int:
    config = prepare(args)
    out = Path(args.out)
    model = load_model(args)
    progress = False if args.no_progress else None
    opt = Optimizer(model, config, out, resume=args.resume, progress=progress).run()
    if args.baselines:
        run_baselines(
            model,
            dataclasses.replace(config, method="bo"),
            out,
            objectives=opt.objectives,
            resume=args.resume,
            progress=progress,
        )
        opt.write_reports(baselines=load_baseline_tables(out))
    _print_summary(out, opt, config)
    return 0


def prepare(args: argparse.Namespace, replacing: bool = False) -> OptimizeConfig:
    """The run's OptimizeConfig from the options (and, with --resume, the saved settings), every check made
    before the model loads or anything is written. ``replacing``: a run in --out is removed before this one
    starts (``molvae demo --overwrite``), so it is no reason to refuse."""
    out = Path(args.out)
    if args.resume and (out / CONFIG_FILE).exists():
        given, names = _resume_request(args)
        config = resume_config(
            out, given, names, objectives_option="--objectives" if args.objectives else "--objective"
        )
    else:
        config = _new_run_config(args, out, replacing)
    check_output_dir(out, create=False)
    return config


def _new_run_config(args: argparse.Namespace, out: Path, replacing: bool) -> OptimizeConfig:
    """A new run's OptimizeConfig: the options given, OptimizeConfig's defaults for the others."""
    if args.resume:
        where = (
            f"{out} does not exist"
            if not out.exists()
            else f"{out} holds no saved run (no config.json): it was stopped before its first save"
        )
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
        ref_name, ref = resolve_molecule(args.similar_to) if args.similar_to else (None, None)
        constraints = Constraints(
            reference=ref,
            reference_name=ref_name,
            min_similarity=args.min_similarity,
            alerts=args.alerts.split(",") if args.alerts else None,
            ranges=range_table(args.ranges),
        ).to_dict()
    return OptimizeConfig(
        objectives=[o.name for o in objectives], constraints=constraints, **_run_settings(args)
    ).validate()


def _print_summary(out: Path, opt, config) -> None:
    """The closing lines: calls, rounds, what was not scored, why the run stopped, the best molecules."""
    state = opt.state()
    best = state["best"]
    # Shown without constraints too: an objective that returns NaN marks molecules infeasible.
    infeasible = f", {state['n_infeasible']} infeasible" if opt.constraints.active or state["n_infeasible"] else ""
    print(
        f"{out}: {_count(state['calls'], 'oracle call')} in {_count(state['round'], 'round')} "
        f"({_count(state['n_invalid'], 'invalid decode')}, {_count(state['n_repeat'], 'repeat')} not "
        f"scored{infeasible})"
        + (f"; best {best:.4g}" if best is not None else "")
        + (
            f"; stopped at the round limit with {config.budget - state['calls']} calls left"
            if state["stop_reason"] == "max_rounds"
            else ""
        )
        + (
            f"; stopped after {config.patience} rounds in a row that scored nothing, with "
            f"{config.budget - state['calls']} calls left"
            if state["stop_reason"] == "patience"
            else ""
        )
    )
    _print_top(out, opt)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _print_top(out, opt, n: int = 5) -> None:
    """The first rows of best.csv (or pareto.csv with several objectives), so a run can be judged without opening
    files."""
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
    print(
        f"{'Pareto front' if multi else 'best molecules'} ({len(table)} in {name}"
        + (f", first {n} shown" if len(table) > n else "")
        + "):"
    )
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", max_colwidth=70))
