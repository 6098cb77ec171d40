"""Data-parallel training under torchrun: process group, gradient averaging, rank-0 writes.

Layer-local methods call backward once per layer inside `train_step`, which the DDP wrapper
(hooked into one forward/backward pair) cannot follow; so gradients are averaged over ranks
with one flat all-reduce after the step, which is what DDP computes. NCCL on GPUs, gloo on CPU.
"""
from __future__ import annotations

import os
from typing import Iterable

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def init(device: torch.device) -> None:
    """Join the process group once (no-op for a single process)."""
    if world()[1] > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown(barrier: bool) -> None:
    if dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


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
