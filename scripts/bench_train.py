"""Training (and a quick sampling) throughput on the current device, in molecules/s.

    python scripts/bench_train.py --preset moses-reference --reference

prints molvae's training molecules/s and, with --reference, the MOSES reference
VAE's in the same process and the ratio. Last line: one JSON object.
"""

from __future__ import annotations

import argparse

import torch
from benchlib import ALLOCATOR_TUNED, PRESETS, MosesReferenceVAE, emit, moses_data, reference_batches, timed

from molvae.chemistry import canonicalize
from molvae.data import collate, length_bucketed_batches
from molvae.model import MolVAE, ModelConfig, SequenceVAE, resolve_device, resolve_dtype
from molvae.training import TrainConfig, train_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="default")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=10, help="timed training steps (run twice: untimed, then timed)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--molecules", type=int, default=20_000, help="MOSES molecules to draw batches from")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--device", default="auto")
    p.add_argument("--sample-n", type=int, default=2000, help="prior samples for the decoding figure (0: skip)")
    p.add_argument("--reference", action="store_true", help="also time the MOSES reference VAE and print ratios")
    p.add_argument("--compare-nn-gru", action="store_true",
                   help="also time molvae with torch's nn.GRU instead of molvae.recurrent (CPU), same batches")
    args = p.parse_args()

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, device)
    preset = PRESETS[args.preset]
    batch_size = args.batch_size or preset["batch_size"]
    data = moses_data(args.molecules)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(data.vocab), **preset["model"])
    net = SequenceVAE(config).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    cfg = TrainConfig()
    batches = length_bucketed_batches(data.lengths, batch_size, seed=0, epoch=0)
    tensors = [collate(data, b) for b in batches[: args.warmup + args.steps]]

    def run(batch_list):
        for seq, lengths in batch_list:
            train_step(net, opt, torch.from_numpy(seq).to(device), torch.from_numpy(lengths), dtype, 0.1, cfg)
        if device.type == "cuda":
            torch.cuda.synchronize()

    # oneDNN builds one RNN primitive per sequence length; a long epoch reuses them, so
    # the timed batches run once untimed first and the steady state is what is measured.
    run(tensors[: args.warmup])
    timed_batches = tensors[args.warmup :]
    run(timed_batches)
    seconds = timed(lambda: run(timed_batches))
    n_mol = sum(len(lengths) for _, lengths in timed_batches)
    nn_gru_seconds = None
    if args.compare_nn_gru:
        net.fused_cpu_gru = False
        run(tensors[: args.warmup])
        nn_gru_seconds = timed(lambda: run(timed_batches))
        net.fused_cpu_gru = True
    figures = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "preset": args.preset,
        "precision": str(dtype).replace("torch.", ""),
        "batch_size": batch_size,
        "parameters": sum(p.numel() for p in net.parameters()),
        "train_mol_per_s": n_mol / seconds,
        "allocator_tuned": ALLOCATOR_TUNED,
    }
    if nn_gru_seconds is not None:
        figures["nn_gru_train_mol_per_s"] = n_mol / nn_gru_seconds
        figures["fused_gru_speedup"] = nn_gru_seconds / seconds
    if args.sample_n:
        model = MolVAE(net.eval(), data.vocab, device=device, precision=args.precision)
        model.sample(64, seed=0)

        def sample_and_validate():
            return [canonicalize(s) for s in model.sample(args.sample_n, seed=1)]

        figures["sample_mol_per_s"] = args.sample_n / timed(sample_and_validate)
    if args.reference:
        torch.manual_seed(0)
        ref = MosesReferenceVAE(len(data.vocab)).to(device).train()
        ref_opt = torch.optim.Adam(ref.parameters(), lr=3e-4)
        ref_batches = reference_batches(data, 512, args.warmup + max(2, args.steps // 4))

        def ref_run(batch_list):
            for seqs in batch_list:
                ref_opt.zero_grad()
                ref([s.to(device) for s in seqs]).backward()
                torch.nn.utils.clip_grad_norm_(ref.parameters(), 50)
                ref_opt.step()

        ref_run(ref_batches[: args.warmup])
        ref_run(ref_batches[args.warmup :])  # same steady-state treatment as molvae
        ref_seconds = timed(lambda: ref_run(ref_batches[args.warmup :]))
        figures["reference_parameters"] = sum(p.numel() for p in ref.parameters())
        figures["reference_train_mol_per_s"] = 512 * len(ref_batches[args.warmup :]) / ref_seconds
        figures["train_speedup"] = figures["train_mol_per_s"] / figures["reference_train_mol_per_s"]
    emit(figures)


if __name__ == "__main__":
    main()
