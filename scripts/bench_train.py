"""Training (and a quick sampling) throughput on the current device, in molecules/s.

    python scripts/bench_train.py --preset moses-reference --reference

prints molvae's training molecules/s and, with --reference, the MOSES reference
VAE's in the same process and the ratio. molvae and the reference take turns
(--repeats); each repeat gives a side-by-side ratio and the medians are printed,
since this machine's speed drifts within minutes. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics

import torch
from benchlib import (
    ALLOCATOR_TUNED,
    PRESETS,
    MosesReferenceVAE,
    at_least_one,
    emit,
    moses_data,
    reference_batches,
    timed,
)

from molvae.data import collate, length_bucketed_batches
from molvae.model import ModelConfig, MolVAE, SequenceVAE, resolve_device, resolve_dtype
from molvae.recurrent import cpu_kernel
from molvae.runtime import ENV_SWITCH
from molvae.training import TrainConfig, make_optimizer, make_train_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="default")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=10, help="timed training steps (run twice: untimed, then timed)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--molecules", type=int, default=20_000, help="MOSES molecules to draw batches from")
    p.add_argument("--data", default="moses", help="moses, or a token file of it (no RDKit needed then)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--device", default="auto")
    p.add_argument("--sample-n", type=int, default=2000, help="prior samples for the decoding figure (0: skip)")
    p.add_argument("--reference", action="store_true", help="also time the MOSES reference VAE and print ratios")
    p.add_argument(
        "--untuned-reference",
        action="store_true",
        help="with --reference: also time the reference in a second process with glibc's default "
        "allocator, as MOSES runs (this process tunes it for molvae, which speeds up the "
        "reference too); its turns alternate with the others",
    )
    p.add_argument(
        "--repeats", type=at_least_one, default=1, help="alternating molvae/reference timings (medians are printed)"
    )
    p.add_argument(
        "--no-cuda-graphs",
        action="store_true",
        help="on a GPU, launch each step's kernels from Python instead of replaying CUDA graphs",
    )
    p.add_argument(
        "--compare-nn-gru",
        action="store_true",
        help="also time molvae with torch's nn.GRU instead of molvae.recurrent (CPU), same batches",
    )
    p.add_argument(
        "--compare-torch-loops",
        action="store_true",
        help="CPU: also time molvae.recurrent with its time loops in torch ops instead of the compiled "
        "kernel, alternating with the kernel's timings (same batches, same process)",
    )
    args = p.parse_args()

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, device)
    preset = PRESETS[args.preset]
    batch_size = args.batch_size or preset["batch_size"]
    data = moses_data(args.molecules, args.data)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(data.vocab), **preset["model"])
    net = SequenceVAE(config).to(device).train()
    cfg = TrainConfig(lr=1e-4, batch_size=batch_size, cuda_graphs=not args.no_cuda_graphs)
    opt = make_optimizer(net, cfg)
    step = make_train_step(net, opt, dtype, cfg)
    batches = length_bucketed_batches(data.lengths, batch_size, seed=0, epoch=0)
    tensors = [collate(data, b) for b in batches[: args.warmup + args.steps]]

    def run(batch_list):
        for seq, lengths in batch_list:
            step(torch.from_numpy(seq).to(device), torch.from_numpy(lengths), 0.1)
        if device.type == "cuda":
            torch.cuda.synchronize()

    # oneDNN builds one RNN primitive per sequence length; a long epoch reuses them, so
    # the timed batches run once untimed first and the steady state is what is measured.
    run(tensors[: args.warmup])
    timed_batches = tensors[args.warmup :]
    run(timed_batches)
    n_mol = sum(len(lengths) for _, lengths in timed_batches)
    ref_timer = ReferenceTimer(args, data, device) if args.reference else None
    untuned_timer = UntunedReference(args, device) if args.reference and args.untuned_reference else None
    compare_loops = args.compare_torch_loops and device.type == "cpu"
    if compare_loops:
        net.cpu_gru_kernel = False
        run(timed_batches)
        net.cpu_gru_kernel = True
    rates: list[float] = []
    ref_rates: list[float] = []
    loop_rates: list[float] = []
    untuned_rates: list[float] = []
    for _ in range(args.repeats):
        rates.append(n_mol / timed(lambda: run(timed_batches)))
        if ref_timer is not None:
            ref_rates.append(ref_timer())
        if untuned_timer is not None:
            untuned_rates.append(untuned_timer())
        if compare_loops:
            net.cpu_gru_kernel = False
            loop_rates.append(n_mol / timed(lambda: run(timed_batches)))
            net.cpu_gru_kernel = True
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
        "cuda_graphs": device.type == "cuda" and not args.no_cuda_graphs,
        "parameters": sum(p.numel() for p in net.parameters()),
        "repeats": args.repeats,
        "train_mol_per_s": statistics.median(rates),
        "train_mol_per_s_each": [round(r, 1) for r in rates],
        "allocator_tuned": ALLOCATOR_TUNED,
    }
    if device.type == "cpu":
        figures["cpu_gru_kernel"] = cpu_kernel() is not None
    if loop_rates:
        figures["torch_loops_train_mol_per_s"] = statistics.median(loop_rates)
        add_ratios(figures, "kernel_speedup", rates, loop_rates)
    if nn_gru_seconds is not None:
        figures["nn_gru_train_mol_per_s"] = n_mol / nn_gru_seconds
        figures["fused_gru_speedup"] = figures["train_mol_per_s"] / figures["nn_gru_train_mol_per_s"]
    if args.sample_n:
        model = MolVAE(net.eval(), data.vocab, device=device, precision=args.precision)
        model.sample(64, seed=0)

        def sample_and_validate():
            # Imported here: RDKit is optional for this script (the GPU machine runs it with --sample-n 0).
            from molvae.chemistry import canonicalize

            return [canonicalize(s) for s in model.sample(args.sample_n, seed=1)]

        figures["sample_mol_per_s"] = args.sample_n / timed(sample_and_validate)
    if ref_timer is not None:
        figures["reference_parameters"] = ref_timer.parameters
        figures["reference_train_mol_per_s"] = statistics.median(ref_rates)
        add_ratios(figures, "train_speedup", rates, ref_rates)
    if untuned_timer is not None:
        untuned_timer.close()
        figures["untuned_reference_train_mol_per_s"] = statistics.median(untuned_rates)
        add_ratios(figures, "train_speedup_vs_untuned", rates, untuned_rates)
    emit(figures)


def add_ratios(figures: dict, name: str, rates: list[float], others: list[float]) -> None:
    """``figures[name]``: the median of the repeats' pairwise ratios; ``figures[name + "_each"]``: each one."""
    ratios = [r / q for r, q in zip(rates, others)]
    figures[name] = statistics.median(ratios)
    figures[f"{name}_each"] = [round(r, 2) for r in ratios]


class ReferenceTimer:
    """The MOSES reference VAE, warmed up; each call times its training steps and returns molecules/s."""

    def __init__(self, args: argparse.Namespace, data, device: torch.device):
        torch.manual_seed(0)
        self.ref = MosesReferenceVAE(len(data.vocab)).to(device).train()
        self.opt = torch.optim.Adam(self.ref.parameters(), lr=3e-4)
        self.device = device
        batches = reference_batches(data, 512, args.warmup + max(2, args.steps // 4))
        self.timed_batches = batches[args.warmup :]
        self.parameters = sum(p.numel() for p in self.ref.parameters())
        self.run(batches[: args.warmup])
        self.run(self.timed_batches)  # same steady-state treatment as molvae

    def run(self, batch_list) -> None:
        for seqs in batch_list:
            self.opt.zero_grad()
            self.ref([s.to(self.device) for s in seqs]).backward()
            torch.nn.utils.clip_grad_norm_(self.ref.parameters(), 50)
            self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def __call__(self) -> float:
        return 512 * len(self.timed_batches) / timed(lambda: self.run(self.timed_batches))


def _untuned_reference_worker(conn, args: argparse.Namespace, device: str) -> None:
    # This process started with MOLVAE_TUNE_MALLOC=0, so importing benchlib left glibc alone.
    if ALLOCATOR_TUNED:
        raise RuntimeError("the untuned reference process has a tuned allocator")
    timer = ReferenceTimer(args, moses_data(args.molecules, args.data), torch.device(device))
    conn.send(timer.parameters)
    while conn.recv():
        conn.send(timer())


class UntunedReference:
    """:class:`ReferenceTimer` in a child process that leaves glibc's allocator alone.

    Each call asks the child for one timing and waits for it, so the two processes never
    run at the same time and the turns alternate as in-process timings do.
    """

    def __init__(self, args: argparse.Namespace, device: torch.device):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        previous = os.environ.get(ENV_SWITCH)
        os.environ[ENV_SWITCH] = "0"  # the child inherits this environment at start
        try:
            self.process = ctx.Process(target=_untuned_reference_worker, args=(child, args, str(device)), daemon=True)
            self.process.start()
        finally:
            if previous is None:
                os.environ.pop(ENV_SWITCH)
            else:
                os.environ[ENV_SWITCH] = previous
        self.parameters = self.conn.recv()

    def __call__(self) -> float:
        self.conn.send(True)
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(False)
        self.process.join(timeout=60)


if __name__ == "__main__":
    main()
