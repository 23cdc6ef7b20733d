"""``molvae explore``: decode latents around one molecule and rank what comes out.

Draws z = mu + radius * eps (eps ~ N(0, I); radius in units of the prior's standard
deviation) around the molecule's posterior mean mu, decodes each draw greedily once
(or with --attempts > 1, the most frequent valid molecule over several decodes) and
lists the distinct valid molecules by Tanimoto similarity to the query, with how
many draws gave each.

--train moses marks neighbours that are not in the MOSES training set as novel
(MOSES SMILES are RDKit-canonical; only the neighbours are canonicalized). --train
FILE does the same against any SMILES file (its molecules are canonicalized first).

Writes to --out (a directory): neighbours.csv, neighbours.png and neighbours.svg
(without --out the --top nearest neighbours are printed and nothing is written)
(the query and its --top most similar neighbours).
"""

from __future__ import annotations

import argparse

from molvae.cli.commands import add_command
from molvae.cli.common import (
    add_model_arguments,
    add_prior_argument,
    add_smiles_column_argument,
    load_model,
    print_table,
    write_table,
)
from molvae.errors import MolvaeError
from molvae.tables import check_output_dir


def register(sub: argparse._SubParsersAction) -> None:
    from molvae.chemistry import PROPERTIES

    p = add_command(sub, "explore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("molecule", help="drug name (e.g. celecoxib) or SMILES")
    add_model_arguments(p)
    add_prior_argument(p, default="standard")
    p.add_argument(
        "--out",
        "-o",
        default=None,
        help="output directory (neighbours.csv, neighbours.png, neighbours.svg); without it the "
        "--top neighbours are printed and nothing is written",
    )
    p.add_argument("--n", type=int, default=200, help="latent draws (default 200)")
    p.add_argument("--radius", type=float, default=0.5, help="spread of the draws in prior standard deviations")
    p.add_argument("--attempts", type=int, default=1, help="decodes per draw (1 = greedy only, default)")
    p.add_argument("--temperature", type=float, default=0.5, help="sampling temperature when --attempts > 1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--train",
        default=None,
        metavar="moses|FILE",
        help="training molecules for the novelty column: 'moses' or a SMILES file",
    )
    add_smiles_column_argument(p, "the --train file")
    p.add_argument("--top", type=int, default=24, help="neighbours drawn in the picture (default 24)")
    p.add_argument(
        "--property", default="qed", choices=sorted(PROPERTIES), help="property shown in the picture (default qed)"
    )
    p.set_defaults(func=run)


def _training_set(spec: str, column: str | None = None) -> set[str]:
    from molvae.readers import moses_file, read_smiles

    if spec.lower() == "moses":
        # Already RDKit-canonical: no need to canonicalize 1.58M molecules.
        return set(read_smiles(moses_file("train"), column="SMILES"))
    from molvae.latent import canonical_set

    known = canonical_set(read_smiles(spec, column=column, allow_empty=False))
    if not known:  # every neighbour would be marked novel against an empty set
        raise MolvaeError(f"{spec}: no valid molecule in the training set given with --train")
    return known


def run(args: argparse.Namespace) -> int:
    from molvae.latent import DEFAULT_PROPERTIES, neighbourhood, resolve_input
    from molvae.visualize import draw_neighbour_grid

    if args.n < 1:
        raise MolvaeError(f"--n must be >= 1, got {args.n}")
    if not args.radius >= 0:
        raise MolvaeError(f"--radius must be >= 0, got {args.radius}")
    if args.top < 1:
        raise MolvaeError(f"--top must be >= 1, got {args.top}")
    name, query = resolve_input(args.molecule)
    if args.out is not None:
        check_output_dir(args.out, create=False)  # before the model load and the decoding
    model = load_model(args)
    train = _training_set(args.train, args.smiles_column) if args.train else None
    properties = list(DEFAULT_PROPERTIES)
    if args.property not in properties:
        properties.append(args.property)
    df = neighbourhood(
        model,
        args.molecule,
        n=args.n,
        radius=args.radius,
        train=train,
        seed=args.seed,
        attempts=args.attempts,
        temperature=args.temperature,
        properties=properties,
        prior=args.prior,
    )
    a = df.attrs
    summary = (
        f"{name}: {a['n_draws']} draws at radius {a['radius']:g} ({a['prior']} prior), {a['n_valid_draws']} valid "
        f"({a['validity']:.0%}), {len(df)} distinct molecules"
    )
    if args.out is None:
        if len(df):
            print_table(
                df.head(args.top),
                ["smiles", "tanimoto", "count", *(["novel"] if train is not None else []), args.property],
            )
        print(summary)
        if train is not None:
            print(f"novel (not in the training set): {int(df['novel'].sum())} of {len(df)}")
        print("nothing written; pass --out DIR for neighbours.csv and the pictures")
        return 0
    out = check_output_dir(args.out)
    write_table(df, out / "neighbours.csv")
    print(summary)
    if len(df):
        for suffix in (".png", ".svg"):
            draw_neighbour_grid(
                df,
                query,
                out / f"neighbours{suffix}",
                property=args.property,
                top=args.top,
                query_label=f"query: {name}",
            )
        if train is not None:
            print(f"novel (not in the training set): {int(df['novel'].sum())} of {len(df)}")
        print(f"wrote {out / 'neighbours.csv'}, {out / 'neighbours.png'}, {out / 'neighbours.svg'}")
    else:
        print(
            f"nothing valid decoded; wrote an empty {out / 'neighbours.csv'} (try a smaller --radius or --attempts 5)"
        )
    return 0
