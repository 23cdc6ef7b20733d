"""Training steps replayed from CUDA graphs on one GPU, and the choice between them and eager steps."""

from __future__ import annotations

import math
from typing import Any

import torch

from molvae.model import SequenceVAE
from molvae.training.config import TrainConfig
from molvae.training.steps import StepFn, step_losses, train_step


class CudaGraphTrainStep:
    """:func:`train_step` replayed from CUDA graphs: one graph per batch width, captured at first use.

    A GPU step of this model is about a thousand small kernels (cuDNN runs the GRUs one
    time step at a time); launched one by one from Python, they leave the GPU idle about
    half of the step. A graph launches the recorded kernels in one call. Inside a graph
    every shape is fixed, so the encoder runs unpacked (``static_shapes``: the same
    states as packing) and β lives in a device tensor. The gradients are preallocated
    and zeroed in place, so all graphs write the same tensors; the optimizer steps
    outside the graphs, after the NaN/Inf check that is the step's one host sync, as
    in :func:`train_step`. The first batch of each width runs eagerly, as the warm-up a
    capture needs; batches of another size than ``batch_size`` (an epoch's last) run eagerly.
    """

    def __init__(self, net: SequenceVAE, optimizer: torch.optim.Optimizer, dtype: torch.dtype, cfg: TrainConfig):
        self.net, self.optimizer, self.dtype, self.cfg = net, optimizer, dtype, cfg
        self.device = next(net.parameters()).device
        self.params = [p for p in net.parameters() if p.requires_grad]
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.grads = [p.grad for p in self.params]
        self.beta = torch.zeros((), device=self.device)
        self.graphs: dict[tuple[int, ...], tuple[Any, ...]] = {}
        self.pool = torch.cuda.graph_pool_handle()
        self.side = torch.cuda.Stream(self.device)
        self.eager_steps = 0

    def _body(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        torch._foreach_zero_(self.grads)
        losses = step_losses(self.net, self.dtype, seq, lengths, self.beta, self.cfg, static_shapes=True)
        losses["loss"].backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        return torch.stack([losses["loss"], losses["recon"], losses["kl"], norm]).detach().float()

    def __call__(self, seq: torch.Tensor, lengths: torch.Tensor, beta: float) -> dict[str, float] | None:
        lengths = lengths.to(self.device, non_blocking=True)
        self.beta.fill_(beta)
        entry = self.graphs.get(tuple(seq.shape))
        if entry is None:
            self.eager_steps += 1
            # Warm-up on a side stream, as capture requires; it is also this batch's real step.
            self.side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.side):
                out = self._body(seq, lengths)
            torch.cuda.current_stream(self.device).wait_stream(self.side)
            if seq.shape[0] == self.cfg.batch_size:
                static_seq, static_lengths = seq.clone(), lengths.clone()
                graph = torch.cuda.CUDAGraph()
                # Recorded, not run: the warm-up's gradients stay for this step's optimizer update.
                with torch.cuda.graph(graph, pool=self.pool):
                    static_out = self._body(static_seq, static_lengths)
                self.graphs[tuple(seq.shape)] = (graph, static_seq, static_lengths, static_out)
        else:
            graph, static_seq, static_lengths, out = entry
            static_seq.copy_(seq, non_blocking=True)
            static_lengths.copy_(lengths, non_blocking=True)
            graph.replay()
        loss, recon, kl, norm = out.tolist()
        if not (math.isfinite(loss) and math.isfinite(norm)):
            return None
        self.optimizer.step()
        return {"loss": loss, "recon": recon, "kl": kl}


def make_train_step(
    net: SequenceVAE, optimizer: torch.optim.Optimizer, dtype: torch.dtype, cfg: TrainConfig, world_size: int = 1
) -> StepFn:
    """``step(seq, lengths, beta)`` for a training loop: CUDA graphs on one GPU (``cfg.cuda_graphs``), else
    :func:`train_step`."""
    device = next(net.parameters()).device
    if cfg.cuda_graphs and device.type == "cuda" and world_size == 1:
        return CudaGraphTrainStep(net, optimizer, dtype, cfg)

    def step(seq: torch.Tensor, lengths: torch.Tensor, beta: float) -> dict[str, float] | None:
        return train_step(net, optimizer, seq, lengths, dtype, beta, cfg, world_size)

    return step
