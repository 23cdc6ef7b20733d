"""Batched encoding throughput (posterior means), in molecules/s.

    python scripts/bench_encode.py --n 20000 [--model runs/zinc-smiles]

Times ``MolVAE.encode`` end to end (canonicalize, tokenize, encode) and the
encoder alone on pre-tokenized ids. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from benchlib import PRESETS, at_least_one, emit, moses_data, timed

from molvae.model import ModelConfig, MolVAE, SequenceVAE, resolve_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="default")
    p.add_argument("--model", default=None)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=at_least_one, default=3, help="timed runs of each kind (the median is printed)")
    args = p.parse_args()

    device = resolve_device(args.device)
    data = moses_data(args.n)
    if args.model:
        model = MolVAE.load(args.model, device=device, precision=args.precision)
    else:
        torch.manual_seed(0)
        cfg = ModelConfig(vocab_size=len(data.vocab), **PRESETS[args.preset]["model"])
        model = MolVAE(SequenceVAE(cfg), data.vocab, device=device, precision=args.precision)
    ids = [data.ids[data.offsets[i] : data.offsets[i + 1]].tolist() for i in range(len(data))]
    # Warm up on every batch shape the timed runs will see (cuDNN sets up each one at its first call).
    model.encode_ids(ids, batch_size=args.batch_size)
    encoder_s = statistics.median(
        timed(lambda: model.encode_ids(ids, batch_size=args.batch_size)) for _ in range(args.repeats)
    )
    full_s = statistics.median(
        timed(lambda: model.encode(data.smiles, batch_size=args.batch_size)) for _ in range(args.repeats)
    )
    emit(
        {
            "device": str(device),
            "threads": torch.get_num_threads(),
            "precision": str(model.dtype).replace("torch.", ""),
            "n": len(data),
            "repeats": args.repeats,
            "encode_mol_per_s": len(data) / full_s,
            "encoder_only_mol_per_s": len(data) / encoder_s,
        }
    )


if __name__ == "__main__":
    main()
