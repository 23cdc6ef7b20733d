"""Prior-sampling throughput (decode + RDKit validation), in molecules/s.

    python scripts/bench_decode.py --preset moses-reference --reference [--model runs/zinc-smiles]

Without --model the weights are untrained, so both molvae and the reference run
to the full max_len=100 tokens (no early EOS): a conservative, like-for-like
comparison. With --model the figure reflects real molecule lengths.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse

import torch
from benchlib import ALLOCATOR_TUNED, PRESETS, MosesReferenceVAE, emit, moses_data, timed

from molvae.chemistry import canonicalize, canonicalize_many
from molvae.model import MolVAE, ModelConfig, SequenceVAE, resolve_device
from molvae.tokenizers import EOS_ID


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="default")
    p.add_argument("--model", default=None, help="a trained model directory instead of random weights")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=int, default=None, help="RDKit validation worker processes")
    p.add_argument("--reference", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the decoding step (MolVAE.compile_decoder)")
    args = p.parse_args()

    device = resolve_device(args.device)
    data = moses_data(2000)
    if args.model:
        model = MolVAE.load(args.model, device=device, precision=args.precision)
    else:
        torch.manual_seed(0)
        cfg = ModelConfig(vocab_size=len(data.vocab), max_length=100, **PRESETS[args.preset]["model"])
        model = MolVAE(SequenceVAE(cfg), data.vocab, device=device, precision=args.precision)
    model.compile_decoder = args.compile
    # Warm-up (and, with --compile, compilation) on a full batch, so no compile time is timed.
    model.sample(min(args.n, args.batch_size), seed=0, batch_size=args.batch_size)
    generated: list[str] = []

    def sample():
        generated[:] = model.sample(args.n, seed=1, batch_size=args.batch_size)

    sample_s = timed(sample)
    validate_s = timed(lambda: canonicalize_many(generated, n_jobs=args.jobs))
    valid = sum(c is not None for c in canonicalize_many(generated, n_jobs=args.jobs))
    figures = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "precision": str(model.dtype).replace("torch.", ""),
        "model": args.model or f"random weights, preset {args.preset}",
        "compiled": args.compile,
        "allocator_tuned": ALLOCATOR_TUNED,
        "n": args.n,
        "decode_mol_per_s": args.n / sample_s,
        "validate_mol_per_s": args.n / validate_s,
        "sample_mol_per_s": args.n / (sample_s + validate_s),
        "validity": valid / args.n,
    }
    if args.reference:
        torch.manual_seed(0)
        ref = MosesReferenceVAE(len(data.vocab)).eval()
        ref.sample(64)
        n_ref = min(args.n, 1024)
        strings: list[str] = []

        def ref_sample():
            ids = ref.sample(n_ref)
            strings[:] = ["".join(model.vocab.decode(row[1:].tolist())) for row in ids]

        ref_decode_s = timed(ref_sample)
        ref_validate_s = timed(lambda: [canonicalize(s) for s in strings])
        figures["reference_sample_mol_per_s"] = n_ref / (ref_decode_s + ref_validate_s)
        figures["sample_speedup"] = figures["sample_mol_per_s"] / figures["reference_sample_mol_per_s"]
    emit(figures)


if __name__ == "__main__":
    main()
