"""Data-parallel training under ``torchrun``: the process group, each rank's device, and what ranks share.

Every rank trains on its share of the same batch plan and averages gradients with the others,
so all hold the same weights; rank 0 alone validates and writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from molvae.devices import resolve_device
from molvae.errors import MolvaeError


@dataclass
class DistributedContext:
    """Rank/world of a ``torchrun`` launch; world size 1 without one."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in WORLD_SIZE/RANK/LOCAL_RANK, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    ctx = DistributedContext(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)
    if not dist.is_initialized():
        # The optimizer's first step imports torch._dynamo. Imported after the group exists, it
        # keeps the group alive past destroy_process_group (torch 2.13: the gloo threads stay),
        # and the group is then torn down during interpreter exit, where it can abort a finished
        # run ("terminate called without an active exception"). Imported first, it does not.
        import torch._dynamo  # noqa: F401

        use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return ctx


def training_device(device_name: str, ctx: DistributedContext) -> torch.device:
    """This rank's device: its own GPU in a multi-process launch on GPUs, else what ``device_name`` resolves to."""
    if ctx.enabled and torch.cuda.is_available() and device_name in ("auto", "cuda"):
        return torch.device("cuda", ctx.local_rank)
    return resolve_device(device_name)


def all_reduce_gradients(params: list[torch.nn.Parameter], world_size: int, loss: torch.Tensor) -> torch.Tensor:
    """Average gradients (and the loss) over ranks with one flat all-reduce; returns the mean loss.

    The loss rides along so every rank sees a NaN on any rank and all skip the same step.
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([*(g.reshape(-1) for g in grads), loss.detach().float().reshape(1).to(grads[0].dtype)])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p)
        offset += n
    return flat[-1]


def all_ranks_agree(flag: bool, ctx: DistributedContext) -> bool:
    """True on every rank if ``flag`` is true on any rank."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(ctx: DistributedContext) -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if ctx.enabled:
        dist.barrier()


def from_main(obj: Any) -> Any:
    """Rank 0's ``obj``, on every rank."""
    shared = [obj]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def check_replicas_in_sync(net: torch.nn.Module, ctx: DistributedContext) -> None:
    """All ranks must hold identical weights; a mismatch means a broken all-reduce."""
    checksum = torch.stack([p.detach().double().sum() for p in net.parameters()]).sum().cpu()
    low, high = checksum.clone().reshape(1), checksum.clone().reshape(1)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if low.item() != high.item():
        raise MolvaeError(
            f"model replicas diverged across {ctx.world_size} processes "
            f"(parameter checksums {low.item()!r} vs {high.item()!r})"
        )
