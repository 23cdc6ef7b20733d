"""``molvae demo``: the README's one-command tour on the bundled pretrained model.

1. interpolates between two drugs (aspirin -> ibuprofen by default), from codes fitted to
   decode to the drugs themselves (``interpolate --endpoints fit``): path table, grid, profile plot;
2. runs a short aqueous-solubility Bayesian optimization among molecules of 200-450 Da, with the
   random baselines beside it: evaluations, best molecules, progress plot. The objective is
   ``solubility`` (ADMET-AI's logS, trained on measured data) where the admet extra is installed, as
   the README's set-up does, and ``esol`` (Delaney's formula, no extra) elsewhere;
3. writes SUMMARY.txt listing every file and what it holds.

A demo that was interrupted picks up where it stopped (the optimization resumes from its
journal); a finished one is kept unless ``--overwrite`` replaces it.

Each step is the same code as the ``interpolate`` and ``optimize`` subcommands, so the
demo's outputs look exactly like theirs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from molvae.chemistry import PROPERTIES, admet
from molvae.cli.commands import add_command
from molvae.errors import MolvaeError
from molvae.folders import BASELINES_DIR, BEST_FILE, CONFIG_FILE, OPTIMIZATION_FILES
from molvae.tables import check_output_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", "-o", default="runs/demo", help="directory for every output (default runs/demo)")
    p.add_argument("--model", default="zinc-smiles", help="bundled model name or model directory")
    p.add_argument("--start", default="aspirin", help="first molecule of the interpolation (name or SMILES)")
    p.add_argument("--end", default="ibuprofen", help="last molecule of the interpolation")
    p.add_argument("--budget", type=int, default=60, help="oracle calls of the solubility optimization")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a previous demo in --out (only the demo's own files: interpolation/, solubility/, SUMMARY.txt)",
    )
    p.set_defaults(func=run)


#: Every file the demo writes, relative to --out: all that --overwrite removes (a folder goes too
#: once it is empty). ``*`` is one folder level: the baselines' runs under solubility/baselines/.
DEMO_FILES = (
    "SUMMARY.txt",
    *(f"interpolation/{name}" for name in ("path.csv", "path.png", "path.svg", "profile.png")),
    *(f"solubility/{name}" for name in OPTIMIZATION_FILES),
    *(f"solubility/{BASELINES_DIR}/*/{name}" for name in OPTIMIZATION_FILES),
)


def objective() -> str:
    """The demo's objective: ADMET-AI's solubility where it is installed, the ESOL formula elsewhere."""
    return "solubility" if admet.available() else "esol"


def _describe(out: Path) -> list[tuple[str, str]]:
    what = {
        "interpolation/path.csv": "one row per step: SMILES, validity, similarity to both ends, properties",
        "interpolation/path.png": "the path drawn as a grid (also path.svg)",
        "interpolation/profile.png": "similarity to start/end and QED along the path",
        "solubility/evaluations.csv": "every molecule scored, in oracle-call order",
        "solubility/best.csv": f"best unique molecules by {PROPERTIES[objective()].label}",
        "solubility/progress.png": "best-so-far and top-10 mean vs oracle calls, with the random baselines",
        "solubility/best.png": "the best molecules drawn",
    }
    return [(str(out / rel), text) for rel, text in what.items() if (out / rel).exists()]


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    out = check_output_dir(Path(args.out), create=False)
    if not args.overwrite and (out / "SUMMARY.txt").exists():
        raise MolvaeError(f"{out} already holds a demo; add --overwrite to replace it, or choose another --out")
    # No SUMMARY.txt yet a saved run: an earlier demo was stopped during its optimization.
    resume = not args.overwrite and (out / "solubility" / CONFIG_FILE).exists()
    interp, opt = _steps(args, out, resume)
    _check(args, out, opt, resume)  # every option, before anything is removed or written
    if args.overwrite:
        _remove_demo_files(out)
    start = time.perf_counter()

    print(f"[1/2] interpolating {args.start} -> {args.end} in the latent space of {args.model}")
    interp.func(interp)
    print(
        f"[2/2] raising aqueous solubility ({PROPERTIES[objective()].label}) of 200-450 Da molecules with "
        f"{args.budget} oracle calls, "
        "random baselines beside" + (f"; resuming the interrupted run in {out / 'solubility'}" if resume else "")
    )
    opt.func(opt)

    path = pd.read_csv(out / "interpolation" / "path.csv")
    best = pd.read_csv(out / "solubility" / BEST_FILE)
    elapsed = time.perf_counter() - start
    lines = [f"molvae demo finished in {elapsed / 60:.1f} min on model {args.model}; outputs:"]
    lines += [f"  {p:<38} {what}" for p, what in _describe(out)]
    lines.append(
        f"interpolation: {int(path['valid'].sum())} of {len(path)} steps valid, "
        f"{path.loc[path['valid'], 'smiles'].nunique()} distinct molecules"
    )
    if len(best):
        top = best.iloc[0]
        lines.append(f"solubility: best {PROPERTIES[objective()].label} {top['score']:.2f} for {top['smiles']}")
    summary = "\n".join(lines)
    (out / "SUMMARY.txt").write_text(summary + "\n")
    print(summary)
    return 0


def _steps(args: argparse.Namespace, out: Path, resume: bool) -> tuple[argparse.Namespace, argparse.Namespace]:
    """The parsed ``interpolate`` and ``optimize`` commands the demo runs."""
    from molvae.cli.main import build_parser

    parser = build_parser()
    common = ["--model", args.model]
    # Fitted ends: the encoder's mean code of aspirin decodes to its methyl ester, and a
    # path titled "aspirin -> ibuprofen" should start at aspirin.
    interp = parser.parse_args(
        [
            "interpolate",
            args.start,
            args.end,
            *common,
            "--steps",
            "12",
            "--endpoints",
            "fit",
            "--out",
            str(out / "interpolation"),
            "--seed",
            str(args.seed),
        ]
    )
    # Without a size window ESOL is maximised by ever longer polar chains (logS grows as MW
    # and logP fall): a drug-like 200-450 Da keeps the demo's answers chemically sensible, and the
    # same window keeps the ADMET-AI model among the molecules it was trained on.
    opt = parser.parse_args(
        [
            "optimize",
            *common,
            "--objective",
            objective(),
            "--budget",
            str(args.budget),
            "--range",
            "mw=200:450",
            "--batch",
            "10",
            "--n-init",
            "20",
            "--seed",
            str(args.seed),
            "--baselines",
            "--out",
            str(out / "solubility"),
            "--no-progress",
        ]
        + (["--resume"] if resume else [])
    )
    return interp, opt


def _check(args: argparse.Namespace, out: Path, opt: argparse.Namespace, resume: bool) -> None:
    """Fail on a bad option before the demo removes or writes anything: the two molecules, the model (and
    that it can spell both), the optimization's settings, and a resumed optimization's agreement with them."""
    from molvae.cli.optimize import prepare
    from molvae.latent import resolve_input
    from molvae.model import MolVAE

    molecules = [resolve_input(args.start)[1], resolve_input(args.end)[1]]
    MolVAE.load(args.model, device="cpu").encode(molecules)  # an unknown token fails here
    for sub in ("interpolation", "solubility"):
        check_output_dir(out / sub, create=False)
    try:
        prepare(opt, replacing=args.overwrite)
    except MolvaeError as exc:
        if not resume:
            raise
        raise MolvaeError(
            f"{out / 'solubility'} holds an interrupted demo optimization that these options cannot "
            f"continue ({exc}); add --overwrite to start the demo again"
        ) from None


def _remove_demo_files(out: Path) -> None:
    """Remove what an earlier demo wrote into ``out`` (:data:`DEMO_FILES`), and the folders that leaves empty.

    Anything else there, a user's own file included, stays.
    """
    for pattern in DEMO_FILES:
        for path in out.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()
    for folder in (f"solubility/{BASELINES_DIR}/*", f"solubility/{BASELINES_DIR}", "solubility", "interpolation"):
        for path in out.glob(folder):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
