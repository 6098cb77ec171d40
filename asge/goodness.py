"""Adaptive spatial goodness: channel-aware patch energies and their fixed random projection."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn


def patch_count(c_l: int, c_last: int, hw: int, alpha: float, min_patches: int = 1) -> int:
    """P_l = clamp(round((C_L / C_l)^alpha), min_patches, H_l): many patches for shallow layers."""
    p = int(round((c_last / c_l) ** alpha))
    return max(min(p, hw), min(min_patches, hw), 1)


def _region_bounds(size: int, p: int) -> list[tuple[int, int]]:
    # the same regions adaptive pooling uses, so sums and means agree on odd sizes
    return [(math.floor(i * size / p), math.ceil((i + 1) * size / p)) for i in range(p)]


@functools.lru_cache(maxsize=64)
def region_areas(hw: int, p: int, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """[p, p] pixel count of each adaptive region of an hw x hw map (cached: no host copy per step)."""
    lens = torch.tensor([b - a for a, b in _region_bounds(hw, p)], dtype=torch.float32)
    return (lens[:, None] * lens[None, :]).to(device)


@functools.lru_cache(maxsize=64)
def region_means(size: int, p: int, device: torch.device) -> torch.Tensor:
    """[p, size] matrix whose row i averages adaptive region i of a line of `size` pixels."""
    m = torch.zeros(p, size)
    for i, (a, b) in enumerate(_region_bounds(size, p)):
        m[i, a:b] = 1.0 / (b - a)
    return m.to(device)


def adaptive_mean(x: torch.Tensor, p: int, deterministic: bool | None = None) -> torch.Tensor:
    """adaptive_avg_pool2d(x, p); under deterministic CUDA as two matrix products, because
    adaptive pooling has no deterministic CUDA backward (it would raise at the first step)."""
    if deterministic is None:
        deterministic = x.is_cuda and torch.are_deterministic_algorithms_enabled()
    if not deterministic:
        return F.adaptive_avg_pool2d(x, p)
    rows = region_means(x.shape[-2], p, x.device).to(x.dtype)
    cols = region_means(x.shape[-1], p, x.device).to(x.dtype)
    return rows @ x @ cols.T


def patch_energy(x: torch.Tensor, p: int, reduction: str) -> torch.Tensor:
    """Goodness of each of the p x p patches of every channel, flattened to [B, C * p * p].

    reduction 'sum' is the literal energy (sum of squares); 'mean' divides by the patch area.
    """
    mean_sq = adaptive_mean(x.float().square(), p)
    if reduction == "sum":
        mean_sq = mean_sq * region_areas(x.shape[-1], p, mean_sq.device)
    elif reduction != "mean":
        raise ValueError(f"unknown goodness reduction {reduction!r}")
    return mean_sq.flatten(1)


class FixedProjection(nn.Module):
    """a = scale * (W g) + b with W, b fixed at initialisation (buffers: never trained, saved).
    trainable=True makes W, b parameters: an ablation, not ASGE (docs/recipe.md)."""

    def __init__(self, dim: int, classes: int, init: str, bias: str, scale: float, generator: torch.Generator,
                 trainable: bool = False) -> None:
        super().__init__()
        if init == "gaussian":
            w = torch.randn(classes, dim, generator=generator) / math.sqrt(dim)
        elif init == "rademacher":
            w = (torch.randint(0, 2, (classes, dim), generator=generator) * 2 - 1).float() / math.sqrt(dim)
        elif init == "orthogonal":
            # orthonormal rows (unit norm, like the gaussian's rows on average) when classes <= dim;
            # with more classes than goodness values, orthonormal columns instead
            q, _ = torch.linalg.qr(torch.randn(max(classes, dim), min(classes, dim), generator=generator))
            w = (q.T if classes <= dim else q).contiguous()
        else:
            raise ValueError(f"unknown projection init {init!r}")
        b = torch.randn(classes, generator=generator) * 0.1 if bias == "random" else torch.zeros(classes)
        if trainable:
            self.weight, self.bias = nn.Parameter(w), nn.Parameter(b)
        else:
            self.register_buffer("weight", w)
            self.register_buffer("bias", b)
        self.scale = scale

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(g, self.weight.to(g.dtype)) + self.bias.to(g.dtype)
