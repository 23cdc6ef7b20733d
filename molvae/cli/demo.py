"""``molvae demo``: the README's one-command tour on the bundled pretrained model.

1. interpolates between two drugs (aspirin -> ibuprofen by default), from codes fitted to
   decode to the drugs themselves (``interpolate --endpoints fit``): path table, grid, profile plot;
2. runs a short aqueous-solubility (ESOL logS) Bayesian optimization among molecules of
   200-450 Da, with the random baselines beside it: evaluations, best molecules, progress plot;
3. writes SUMMARY.txt listing every file and what it holds.

A demo that was interrupted picks up where it stopped (the optimization resumes from its
journal); a finished one is kept unless ``--overwrite`` replaces it.

Each step is the same code as the ``interpolate`` and ``optimize`` subcommands, so the
demo's outputs look exactly like theirs.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from molvae.errors import MolvaeError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="tour on the bundled model: interpolate two drugs, optimize solubility",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", "-o", default="runs/demo", help="directory for every output (default runs/demo)")
    p.add_argument("--model", default="zinc-smiles", help="bundled model name or model directory")
    p.add_argument("--start", default="aspirin", help="first molecule of the interpolation (name or SMILES)")
    p.add_argument("--end", default="ibuprofen", help="last molecule of the interpolation")
    p.add_argument("--budget", type=int, default=60, help="oracle calls of the solubility optimization")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true",
                   help="replace a previous demo in --out (only the demo's own files: interpolation/, solubility/, "
                        "SUMMARY.txt)")
    p.set_defaults(func=run)


#: What the demo writes into --out, and all that --overwrite removes.
OUTPUTS = ("interpolation", "solubility", "SUMMARY.txt")


def _describe(out: Path) -> list[tuple[str, str]]:
    what = {
        "interpolation/path.csv": "one row per step: SMILES, validity, similarity to both ends, properties",
        "interpolation/path.png": "the path drawn as a grid (also path.svg)",
        "interpolation/profile.png": "similarity to start/end and QED along the path",
        "solubility/evaluations.csv": "every molecule scored, in oracle-call order",
        "solubility/best.csv": "best unique molecules by ESOL logS",
        "solubility/progress.png": "best-so-far and top-10 mean vs oracle calls, with the random baselines",
        "solubility/best.png": "the best molecules drawn",
    }
    return [(str(out / rel), text) for rel, text in what.items() if (out / rel).exists()]


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from molvae.cli.main import build_parser

    from molvae.tables import check_output_dir

    out = check_output_dir(Path(args.out), create=False)
    if args.overwrite:
        for name in OUTPUTS:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
            elif (out / name).exists():
                (out / name).unlink()
    elif (out / "SUMMARY.txt").exists():
        raise MolvaeError(f"{out} already holds a demo; add --overwrite to replace it, or choose another --out")
    # No SUMMARY.txt yet a journal: an earlier demo was stopped during its optimization.
    resume = (out / "solubility" / "config.json").exists()
    parser = build_parser()
    start = time.perf_counter()
    common = ["--model", args.model]

    print(f"[1/2] interpolating {args.start} -> {args.end} in the latent space of {args.model}")
    # Fitted ends: the encoder's mean code of aspirin decodes to its methyl ester, and a
    # path titled "aspirin -> ibuprofen" should start at aspirin.
    interp = parser.parse_args(["interpolate", args.start, args.end, *common, "--steps", "12", "--endpoints", "fit",
                                "--out", str(out / "interpolation"), "--seed", str(args.seed)])
    interp.func(interp)

    # Without a size window ESOL is maximised by ever longer polar chains (logS grows as MW
    # and logP fall): a drug-like 200-450 Da keeps the demo's answers chemically sensible.
    print(f"[2/2] raising aqueous solubility (ESOL logS) of 200-450 Da molecules with {args.budget} oracle calls, "
          "random baselines beside" + (f"; resuming the interrupted run in {out / 'solubility'}" if resume else ""))
    opt = parser.parse_args(["optimize", *common, "--objective", "esol", "--budget", str(args.budget),
                             "--range", "mw=200:450", "--batch", "10", "--n-init", "20", "--seed", str(args.seed),
                             "--baselines", "--out", str(out / "solubility"), "--no-progress"]
                            + (["--resume"] if resume else []))
    opt.func(opt)

    path = pd.read_csv(out / "interpolation" / "path.csv")
    best = pd.read_csv(out / "solubility" / "best.csv")
    elapsed = time.perf_counter() - start
    lines = [f"molvae demo finished in {elapsed / 60:.1f} min on model {args.model}; outputs:"]
    lines += [f"  {p:<38} {what}" for p, what in _describe(out)]
    lines.append(f"interpolation: {int(path['valid'].sum())} of {len(path)} steps valid, "
                 f"{path.loc[path['valid'], 'smiles'].nunique()} distinct molecules")
    if len(best):
        top = best.iloc[0]
        lines.append(f"solubility: best ESOL logS {top['esol']:.2f} for {top['smiles']}")
    summary = "\n".join(lines)
    (out / "SUMMARY.txt").write_text(summary + "\n")
    print(summary)
    return 0
