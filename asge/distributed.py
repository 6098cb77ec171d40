"""Data-parallel training under torchrun: process group, gradient averaging, rank-0 writes.

Layer-local methods call backward once per layer inside `train_step`, which the DDP wrapper
(hooked into one forward/backward pair) cannot follow; so gradients are averaged over ranks
with one flat all-reduce after the step, which is what DDP computes. NCCL on GPUs, gloo on CPU.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from typing import Iterable, Iterator

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from asge.ranks import world

__all__ = ["world", "init", "shutdown", "rank_zero_first", "average_gradients", "all_reduce_sum"]


def init(device: torch.device) -> None:
    """Join the process group once (no-op for a single process)."""
    if world()[1] > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown(barrier: bool) -> None:
    if dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


# How long the other ranks wait for rank 0 to build the data cache. Extracting and decoding a
# large tarball takes far longer than a training collective may (NCCL's default is 10 minutes),
# so the wait runs on its own CPU (gloo) group with this timeout instead of the default group's.
DATA_WAIT = timedelta(hours=6)


@contextmanager
def rank_zero_first() -> Iterator[None]:
    """Run the enclosed block on rank 0 while the other ranks wait, then on the other ranks.

    For the data layer: rank 0 builds (or verifies) the data cache alone, and the other ranks
    then find it built and only read it, instead of N processes decoding the same files and
    racing to write the same cache entries. When rank 0 fails inside the block, the other
    ranks raise at once rather than retrying the failed build themselves. A no-op for one
    process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        yield
        return
    group = dist.new_group(backend="gloo", timeout=DATA_WAIT)  # collective: every rank calls it here
    ok = torch.zeros(1, dtype=torch.int32)
    if dist.get_rank() == 0:
        try:
            yield
            ok.fill_(1)
        finally:
            dist.broadcast(ok, src=0, group=group)  # releases the waiting ranks, with or without success
        return
    dist.broadcast(ok, src=0, group=group)  # the barrier: returns once rank 0 is done
    if not ok.item():
        raise RuntimeError(f"rank {dist.get_rank()}: rank 0 failed while preparing the data (see its error above); "
                           "not retrying it on this rank")
    yield


def average_gradients(params: Iterable[torch.nn.Parameter], world_size: int) -> None:
    """grad <- mean over ranks, for every parameter that has a gradient on this step.

    Every rank runs the same layers (same ILT windows, same model), so the set of
    parameters with gradients is the same on all ranks."""
    grads = [p.grad for p in params if p.grad is not None]
    if world_size == 1 or not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world_size
    for g, avg in zip(grads, _unflatten_dense_tensors(flat, grads)):
        g.copy_(avg)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(t)
    return t
