"""``molvae evaluate``: MOSES metrics of generated molecules, beside the published baselines.

Either reads molecules (``--samples``: the CSV ``molvae sample`` writes, or any
molecule file) or samples them from a model (``--model``, ``--n``, ``--seed``,
``--prior``: one row per prior), then writes ``metrics.json`` and ``metrics.csv`` to
``--out`` and prints a comparison table.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from molvae.chemistry import admet
from molvae.cli.commands import add_command
from molvae.cli.common import add_prior_argument, add_smiles_column_argument, write_table
from molvae.errors import ConfigError, InputFileError


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "evaluate", description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--samples", help="molecule file: CSV with a smiles column (molvae sample output), .smi, ...")
    src.add_argument(
        "--model",
        help="model directory or bundled model name (zinc-smiles, zinc-selfies): sample "
        "--n molecules from the prior, then evaluate",
    )
    p.add_argument("--n", type=int, default=30000, help="molecules to sample with --model (default 30000)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed with --model (default 0)")
    add_prior_argument(p, several=True)
    p.add_argument(
        "--reconstruction",
        type=int,
        default=1000,
        metavar="N",
        help="with --model: exact greedy reconstruction of N random MOSES test molecules (seeded by --seed), "
        "and the active latent units of their codes (default 1000; 0 skips)",
    )
    p.add_argument("--device", default="auto", help="device for sampling and ChemNet (auto, cpu, cuda, ...)")
    p.add_argument(
        "--reference", default="moses-test", help="moses-test (default), moses-test_scaffolds, or a molecule file"
    )
    p.add_argument(
        "--train",
        default="moses-train",
        help="training set for novelty: moses-train (default), a molecule file, or none",
    )
    add_smiles_column_argument(p, "the --samples file")
    from molvae.metrics.solubility import SAMPLE

    p.add_argument("--n-jobs", type=int, default=None, help="worker processes for RDKit work (default: auto)")
    p.add_argument(
        "--solubility-sample",
        type=int,
        default=None,
        metavar="N",
        help="Solubility_W: Wasserstein distance of ADMET-AI solubility (logS) between random subsets of N samples "
        f"and N reference molecules (default {SAMPLE} where the admet extra is installed, 0 skips)",
    )
    p.add_argument("--out", "-o", required=True, help="output directory for metrics.json and metrics.csv")
    p.set_defaults(func=run)


def _read_samples(path: str, column: str | None) -> list[str]:
    """The generated strings of a samples file: in a table an empty cell is an empty (invalid) generation; in a
    SMILES list a blank line is nothing, and is left out (and counted)."""
    from molvae.readers import is_smiles_list, read_smiles

    # molvae sample's CSV has columns smiles, valid, generated: evaluate `smiles`
    # (the canonical form where valid, the raw string where not).
    smiles = read_smiles(path, column=column, allow_empty=False)
    if not is_smiles_list(path):
        return smiles
    kept = [s for s in smiles if s.strip()]
    if not kept:
        raise InputFileError(f"{path}: only blank lines, no molecules")
    if len(kept) < len(smiles):
        print(f"{path}: {len(smiles) - len(kept):,} blank lines left out (not molecules)", file=sys.stderr)
    return kept


def _prior_names(model, text: str) -> list[str]:
    from molvae.priors import prior_names

    if text == "all":
        return prior_names(model)
    names = [n.strip() for n in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise ConfigError(f"--prior: expected distinct comma-separated names, got {text!r}")
    return names


def _solubility_sample(given: int | None) -> int:
    """Molecules per side of Solubility_W: by default some where ADMET-AI is installed, none elsewhere."""
    from molvae.metrics.solubility import SAMPLE

    if given is None:
        return SAMPLE if admet.available() else 0
    if given < 0:
        raise ConfigError(f"--solubility-sample must be >= 0, got {given}")
    if given > 0 and not admet.available():
        raise admet.missing("--solubility-sample")
    return given


def run(args: argparse.Namespace) -> int:
    from molvae.checkpoint import write_json
    from molvae.metrics import evaluate, format_comparisons
    from molvae.tables import check_output_dir

    out = check_output_dir(args.out, create=False)  # fail before the (long) metrics, create only on success
    train = None if str(args.train).lower() == "none" else args.train
    device = None if args.device == "auto" else args.device
    solubility_sample = _solubility_sample(args.solubility_sample)
    extra: dict[str, float] = {}
    if args.samples is not None:
        name = Path(args.samples).name
        samples = {name: (None, _read_samples(args.samples, args.smiles_column))}
    else:
        if args.n < 1:
            raise ConfigError(f"--n must be >= 1, got {args.n}")
        from molvae.model import MolVAE

        model = MolVAE.load(args.model, device=args.device)
        priors = [model.prior(p) for p in _prior_names(model, args.prior)]  # all of them load before any sampling
        name = Path(args.model).name
        samples = {
            f"{name} ({p.name} prior)" if len(priors) > 1 or p.name != "standard" else name: (
                p.name,
                model.sample(args.n, seed=args.seed, prior=p),
            )
            for p in priors
        }
        if args.reconstruction > 0:
            extra = _reconstruction(model, args.reconstruction, args.seed)
    rows = {}
    for label, (_, generated) in samples.items():
        rows[label] = {
            **evaluate(
                generated,
                reference=args.reference,
                train=train,
                n_jobs=args.n_jobs,
                device=device,
                solubility_sample=solubility_sample,
            ),
            **extra,
        }

    def clean(results: dict) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in results.items()}

    first = next(iter(rows))
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "metrics.json",
        {
            "n": len(samples[first][1]),
            "reference": args.reference,
            "train": train,
            "prior": samples[first][0],
            "metrics": clean(rows[first]),
            "priors": {prior: clean(rows[label]) for label, (prior, _) in samples.items() if prior is not None},
        },
    )
    write_table(
        pd.DataFrame(
            [
                {"name": label, "prior": prior, "n": len(generated), **rows[label]}
                for label, (prior, generated) in samples.items()
            ]
        ),
        out / "metrics.csv",
    )
    print(format_comparisons(rows))
    print(f"\nwrote {out / 'metrics.json'} and {out / 'metrics.csv'}")
    return 0


def _reconstruction(model, n: int, seed: int) -> dict[str, float]:
    """Exact greedy reconstruction of ``n`` random MOSES test molecules, and the active units of their codes."""
    from molvae.metrics import active_units, reconstruction_rate
    from molvae.readers import resolve_data_source, sample_smiles

    test_path, column = resolve_data_source("moses-test")
    # a random sample: the test file is ordered, its first lines are one cluster of similar molecules
    recon_set = sample_smiles(test_path, n, seed=seed, column=column)
    units = active_units(model.encode(recon_set, errors="nan")) if len(recon_set) >= 2 else None
    return {
        f"reconstruction@{len(recon_set)}": reconstruction_rate(model, recon_set),
        f"active_units@{len(recon_set)}": units,
    }  # of the model's latent_dim dimensions
