"""``molvae interpolate``: decode the latent path between two molecules and draw it.

Both molecules (drug names or SMILES) are encoded to their posterior means (or,
with --endpoints fit, to codes that decode back to them) and joined linearly or
spherically (slerp); every point is decoded with several attempts (greedy, then
low-temperature samples; the most frequent valid molecule wins). Steps where nothing
valid came out are kept and reported as invalid.

Writes to --out (a directory): path.csv (one row per step), path.png and path.svg
(grid of the path) and profile.png (similarity to start/end and --property along the path).
Without --out the path is printed as a table and nothing is written.
"""

from __future__ import annotations

import argparse

from molvae.cli.commands import add_command
from molvae.cli.common import add_model_arguments, load_model, print_table, write_table
from molvae.errors import MolvaeError
from molvae.tables import check_output_dir


def register(sub: argparse._SubParsersAction) -> None:
    from molvae.chemistry import PROPERTIES

    p = add_command(sub, "interpolate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("start", help="first molecule: drug name (e.g. aspirin) or SMILES")
    p.add_argument("end", help="second molecule: drug name or SMILES")
    add_model_arguments(p)
    p.add_argument(
        "--out",
        "-o",
        default=None,
        help="output directory (path.csv, path.png, path.svg, profile.png); without it the path "
        "is printed and nothing is written",
    )
    p.add_argument("--steps", type=int, default=12, help="points on the path, endpoints included (default 12)")
    p.add_argument("--method", default="linear", choices=["linear", "slerp"], help="interpolation (default linear)")
    p.add_argument(
        "--prior",
        default="standard",
        help="standard: join the codes in the latent space itself (default); the name of a flow prior stored "
        "with the model (`molvae info`): join them in its noise, so the path follows the density of the "
        "training codes",
    )
    p.add_argument(
        "--unique",
        type=int,
        default=None,
        metavar="N",
        help="refine the grid until N distinct valid molecules are on the path (or --max-points is hit)",
    )
    p.add_argument("--max-points", type=int, default=200, help="largest grid --unique may use (default 200)")
    p.add_argument(
        "--endpoints",
        default="mean",
        choices=["mean", "fit"],
        help="mean: the encoder's posterior means (default); fit: move each endpoint until it "
        "decodes back to the input molecule (gradient steps on z, see MolVAE.fit_latents)",
    )
    p.add_argument(
        "--fit-steps",
        type=int,
        default=400,
        help="most optimizer steps per endpoint with --endpoints fit (default 400)",
    )
    p.add_argument("--attempts", type=int, default=10, help="decodes per point (greedy + samples, default 10)")
    p.add_argument("--temperature", type=float, default=0.5, help="sampling temperature of the extra attempts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--property", default="qed", choices=sorted(PROPERTIES), help="property shown in the pictures (default qed)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from molvae.latent import DEFAULT_PROPERTIES, interpolate, resolve_input
    from molvae.visualize import draw_path_grid, plot_path_profile

    if args.steps < 2:
        raise MolvaeError(f"--steps must be >= 2 (both endpoints are included), got {args.steps}")
    if args.unique is not None and args.unique < 1:
        raise MolvaeError(f"--unique must be >= 1, got {args.unique}")
    if args.fit_steps < 1:
        raise MolvaeError(f"--fit-steps must be >= 1, got {args.fit_steps}")
    # Check both inputs and --out before the (slower) model load so typos fail fast.
    resolve_input(args.start)
    resolve_input(args.end)
    if args.out is not None:
        check_output_dir(args.out, create=False)
    model = load_model(args)
    properties = list(DEFAULT_PROPERTIES)
    if args.property not in properties:
        properties.append(args.property)
    df = interpolate(
        model,
        args.start,
        args.end,
        steps=args.steps,
        method=args.method,
        attempts=args.attempts,
        temperature=args.temperature,
        seed=args.seed,
        unique=args.unique,
        max_points=args.max_points,
        properties=properties,
        endpoints=args.endpoints,
        fit_steps=args.fit_steps,
        prior=args.prior,
        progress=None,
    )
    if args.out is None:
        shown = df.assign(smiles=df["smiles"].where(df["valid"], "(invalid)"))
        print_table(shown, ["step", "t", "smiles", "tanimoto_start", "tanimoto_end", args.property])
        _summary(df, args)
        print("nothing written; pass --out DIR for path.csv and the pictures")
        return 0
    out = check_output_dir(args.out)
    write_table(df, out / "path.csv")

    # With --unique the grid can be long: draw each new molecule once (plus invalid steps
    # are left out); without it draw every step, invalid ones as empty cells.
    rows = None
    if args.unique is not None:
        rows = df.index[df["valid"] & ~df["duplicate_of_previous"]]
        if len(rows) == 0:
            rows = df.index[:1]
    for suffix in (".png", ".svg"):
        draw_path_grid(df, out / f"path{suffix}", property=args.property, rows=rows)
    plot_path_profile(df, out / "profile.png", property=args.property)
    _summary(df, args)
    print(f"wrote {out / 'path.csv'}, {out / 'path.png'}, {out / 'path.svg'}, {out / 'profile.png'}")
    return 0


def _summary(df, args: argparse.Namespace) -> None:
    """What the path holds: valid and distinct molecules, endpoints not fitted, invalid steps."""
    a = df.attrs
    print(
        f"{a['start_name']} -> {a['end_name']}: {a['method']} path ({a['prior']} prior) of {a['points']} points, "
        f"{a['n_valid']} valid, {a['unique_found']} distinct molecules"
    )
    for which, row in (("start", df.iloc[0]), ("end", df.iloc[-1])):
        fit = a.get(f"{which}_fit")
        if fit is not None and not fit["reconstructed"]:
            print(
                f"{which} endpoint: no code within {args.fit_steps} steps decodes back to {a[f'{which}_name']}; "
                f"the path starts from the closest one found (NLL {fit['nll']:.1f} nats)"
            )
        elif fit is None and not a.get(f"{which}_reached", True):
            # The encoder's mean code of many drugs decodes to a relative (aspirin to its methyl
            # ester): say so, or the picture's "start" would pass for the input molecule.
            got = f"{row['smiles']} (Tanimoto {row[f'tanimoto_{which}']:.2f})" if row["valid"] else "no valid molecule"
            print(
                f"{which} endpoint: the encoder's code of {a[f'{which}_name']} decodes to {got}; "
                f"--endpoints fit moves it until it decodes to {a[f'{which}_name']} itself"
            )
    invalid = df.loc[~df["valid"], "step"].tolist()
    if invalid:
        print(f"steps that stayed invalid after {args.attempts} attempts: {', '.join(map(str, invalid))}")
    if args.unique is not None and not a["unique_reached"]:
        print(
            f"only {a['unique_found']} distinct valid molecules found (asked for {args.unique}) "
            f"with {a['points']} points; raise --max-points to look harder"
        )
