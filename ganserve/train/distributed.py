"""Data-parallel training under ``torchrun`` (gloo on CPU, NCCL on CUDA), equal to one process on the global batch.

Every rank draws the *global* batch's randomness from the same per-step seed and keeps its interleaved share
(rows r, r + W, r + 2W ...): so each rank sees exactly the samples the single-process step would give it, the
minibatch-stddev groups (strided over the batch) stay the same, and "the first half of the batch" (path-length
regularisation's shrink) is the same samples. Gradients and running means are averaged across ranks, so one
W-process step equals one single-process step up to the order of floating-point sums (tested with 2 processes).
With one process every function here is the identity, so single-process runs are bit-for-bit what they were.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_world()[0] == 0


def setup(device: str) -> str:
    """Join the process group torchrun describes (if any); returns the device this rank trains on."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        cuda = device.startswith("cuda")
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        if cuda:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(device)
    return device


def shard(t: torch.Tensor | None) -> torch.Tensor | None:
    """This rank's interleaved share of a global-batch tensor."""
    rank, world = rank_world()
    return t if t is None or world == 1 else t[rank::world]


def global_randn(n: int, *shape: int) -> torch.Tensor:
    """randn for a local batch of ``n`` rows, drawn as the global batch and sharded (same stream on every rank)."""
    _, world = rank_world()
    return shard(torch.randn(n * world, *shape))


def average_gradients(params: list[torch.Tensor]) -> None:
    _, world = rank_world()
    if world == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def all_mean(t: torch.Tensor) -> torch.Tensor:
    _, world = rank_world()
    if world == 1:
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t / world


def sync_optimizer(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Make ``opt.step()`` average its parameters' gradients across ranks first."""
    _, world = rank_world()
    if world == 1:
        return opt
    params = [p for g in opt.param_groups for p in g["params"]]
    step = opt.step

    def synced_step(*args, **kwargs):
        average_gradients(params)
        return step(*args, **kwargs)

    opt.step = synced_step
    return opt


@torch.no_grad()
def average_buffers(module: nn.Module) -> None:
    """Average floating buffers (running means such as w_avg, BN statistics): their updates are linear in the
    local batch means, so the average is the single-process value."""
    _, world = rank_world()
    if world == 1:
        return
    for b in module.buffers():
        if b.is_floating_point():
            dist.all_reduce(b)
            b /= world


def barrier() -> None:
    if rank_world()[1] > 1:
        dist.barrier()


def finish() -> None:
    """Leave the process group together: wait for rank 0's last snapshot, then tear the group down on every rank. A
    rank that simply exits while another is still in gloo can be aborted (SIGABRT) at interpreter shutdown."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
