"""Prior-sampling throughput (decode + RDKit validation), in molecules/s.

    python scripts/bench_decode.py --preset moses-reference --reference [--model runs/zinc-smiles]

With --model the figure reflects real molecule lengths (the bundled zinc-smiles
samples end after 38 tokens on average), and --priors times several of its latent
priors side by side (``--priors standard,flow``: the cost of a learned prior). Without it the weights are untrained:
their near-uniform next-token distribution draws EOS early (25 tokens on average
for a 27-token vocabulary), so that figure flatters molvae. The MOSES reference
always runs its 100 steps, as the MOSES code does; molvae stops a batch once every
sequence has ended and drops finished rows as it goes.

molvae and the reference take turns (--repeats); each repeat gives a side-by-side
ratio, and the medians are printed. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from benchlib import ALLOCATOR_TUNED, PRESETS, MosesReferenceVAE, at_least_one, emit, moses_data, timed

from molvae.model import ModelConfig, MolVAE, SequenceVAE, resolve_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="default")
    p.add_argument("--model", default=None, help="a trained model directory instead of random weights")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=int, default=None, help="RDKit validation worker processes")
    p.add_argument(
        "--no-validate",
        action="store_true",
        help="time decoding only, without RDKit (the GPU machine has none): no validity or sample figures",
    )
    p.add_argument("--data", default="moses", help="moses, or a token file of it (vocabulary of random weights)")
    p.add_argument("--reference", action="store_true")
    p.add_argument(
        "--repeats", type=at_least_one, default=3, help="alternating molvae/reference repeats (medians are printed)"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the decoding step (MolVAE.compile_decoder)")
    p.add_argument(
        "--priors",
        default="standard",
        help="comma-separated latent priors to time in turn (standard, or priors stored with --model); "
        "the first gives the main figures",
    )
    args = p.parse_args()
    priors = args.priors.split(",")

    device = resolve_device(args.device)
    if args.no_validate and args.reference:
        p.error("--reference validates its molecules with RDKit: drop --no-validate")
    # Without a model, random weights take the data's vocabulary (the reference too).
    data = moses_data(2000, args.data) if args.reference or not args.model else None
    if args.model:
        model = MolVAE.load(args.model, device=device, precision=args.precision)
    else:
        torch.manual_seed(0)
        cfg = ModelConfig(vocab_size=len(data.vocab), max_length=100, **PRESETS[args.preset]["model"])
        model = MolVAE(SequenceVAE(cfg), data.vocab, device=device, precision=args.precision)
    model.compile_decoder = args.compile
    # Warm-up (and, with --compile, compilation) on a full batch and on a single row, so no
    # compile time is timed: torch.compile specializes a batch of one row (a batch shrinks to
    # one row as its sequences finish) and would otherwise recompile inside the timed run.
    for prior in priors:
        model.sample(min(args.n, args.batch_size), seed=0, batch_size=args.batch_size, prior=prior)
        model.sample(1, seed=0, prior=prior)
    ref = None
    if args.reference:
        torch.manual_seed(0)
        ref = MosesReferenceVAE(len(data.vocab)).eval()
        ref.sample(64)
    n_ref = min(args.n, 1024)
    generated: list[str] = []
    strings: list[str] = []

    def sample(prior: str) -> None:
        generated[:] = model.sample(args.n, seed=1, batch_size=args.batch_size, prior=prior)

    def ref_sample():
        ids = ref.sample(n_ref)
        strings[:] = ["".join(model.vocab.decode(row[1:].tolist())) for row in ids]

    # molvae and the reference take turns, so a slow spell of this shared machine hits both
    # and each repeat gives its own side-by-side ratio; the figures are medians over repeats.
    rates: dict[str, list[float]] = {"decode": [], "validate": [], "sample": [], "reference": [], "ratio": []}
    by_prior: dict[str, list[float]] = {prior: [] for prior in priors}
    to_first: dict[str, list[float]] = {prior: [] for prior in priors[1:]}
    for _ in range(args.repeats):
        for prior in priors[1:]:  # the others first, so `generated` ends up holding the first prior's molecules
            by_prior[prior].append(args.n / timed(lambda prior=prior: sample(prior)))
        sample_s = timed(lambda: sample(priors[0]))
        by_prior[priors[0]].append(args.n / sample_s)
        for prior in priors[1:]:
            to_first[prior].append(by_prior[prior][-1] / by_prior[priors[0]][-1])
        rates["decode"].append(args.n / sample_s)
        if args.no_validate:
            continue
        validate_s = timed(lambda: canonical(generated, args.jobs))
        rates["validate"].append(args.n / validate_s)
        rates["sample"].append(args.n / (sample_s + validate_s))
        if ref is not None:
            ref_s = timed(ref_sample) + timed(lambda: canonical(strings, 1))
            rates["reference"].append(n_ref / ref_s)
            rates["ratio"].append(rates["sample"][-1] / rates["reference"][-1])
    valid = None if args.no_validate else sum(c is not None for c in canonical(generated, args.jobs))
    figures = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "precision": str(model.dtype).replace("torch.", ""),
        "model": args.model or f"random weights, preset {args.preset}",
        "compiled": args.compile,
        "prior": priors[0],
        "allocator_tuned": ALLOCATOR_TUNED,
        "n": args.n,
        "repeats": args.repeats,
        "decode_mol_per_s": statistics.median(rates["decode"]),
        "validate_mol_per_s": statistics.median(rates["validate"]) if rates["validate"] else None,
        "sample_mol_per_s": statistics.median(rates["sample"]) if rates["sample"] else None,
        "sample_mol_per_s_each": [round(r, 1) for r in rates["sample"]],
        "validity": None if valid is None else valid / args.n,
    }
    if len(priors) > 1:
        figures["decode_mol_per_s_by_prior"] = {p: round(statistics.median(r), 1) for p, r in by_prior.items()}
        figures[f"decode_rate_relative_to_{priors[0]}"] = {
            p: round(statistics.median(r), 3) for p, r in to_first.items()
        }
        figures[f"decode_rate_relative_to_{priors[0]}_each"] = {
            p: [round(x, 3) for x in r] for p, r in to_first.items()
        }
    if ref is not None:
        figures["reference_sample_mol_per_s"] = statistics.median(rates["reference"])
        figures["sample_speedup"] = statistics.median(rates["ratio"])
        figures["sample_speedup_each"] = [round(r, 2) for r in rates["ratio"]]
    emit(figures)


def canonical(smiles: list[str], jobs: int | None) -> list[str | None]:
    """RDKit's canonical form of each string (None where invalid)."""
    # Imported here: RDKit is optional for this script (the GPU machine runs it with --no-validate).
    from molvae.chemistry import canonicalize_many

    return canonicalize_many(smiles, n_jobs=jobs)


if __name__ == "__main__":
    main()
