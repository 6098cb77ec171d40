"""VGG-style backbones described by data: conv widths, kernel sizes and which layers pool.

VGG8 for CIFAR, the small MNIST net and the wide ImageNet net are config values, not code.
Shared by ASGE, FF and BP so that comparisons isolate the learning rule.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from asge.config import ConfigError, Key

BACKBONE_KEYS: dict[str, Key] = {
    "channels": Key([128, 128, 256, 256, 512, 512, 512, 512], (list,), "output channels of each conv layer (VGG8 by default)"),
    "kernel_size": Key(3, (int, list), "conv kernel size, one for all layers or one per layer"),
    "pool_layers": Key([2, 4, 6, 8], (list,), "1-based indices of the layers that end with 2x2 stride-2 pooling"),
    "pooling": Key("rms", (str,), "pooling operator in the pooling layers", choices=("rms", "avg", "max")),
    "norm": Key("layernorm", (str,), "normalisation between blocks: over (C,H,W), over C per position, or none",
                choices=("layernorm", "channel", "none")),
    "norm_affine": Key(True, (bool,), "learnable scale and shift in the norm (trained by the following layer's loss)"),
    "width": Key(1.0, (float,), "multiplier on every entry of `channels` (quarter width = 0.25)",
                 check=lambda v: v > 0, allowed="> 0"),
}


def check_backbone(cfg: Mapping) -> None:
    """Cross-key checks of the backbone spec (a clear error before any job runs)."""
    ch, ks, pools = cfg["channels"], cfg["kernel_size"], cfg["pool_layers"]
    if not ch or not all(isinstance(c, int) and c > 0 for c in ch):
        raise ConfigError(f"config key 'channels': {ch!r} must be a non-empty list of positive integers")
    if isinstance(ks, list) and (len(ks) != len(ch) or not all(isinstance(k, int) and k % 2 == 1 for k in ks)):
        raise ConfigError(f"config key 'kernel_size': {ks!r} must be one odd integer or one per layer ({len(ch)})")
    if isinstance(ks, int) and (ks < 1 or ks % 2 == 0):
        raise ConfigError(f"config key 'kernel_size': {ks!r} must be a positive odd integer")
    bad = [p for p in pools if not isinstance(p, int) or not 1 <= p <= len(ch)]
    if bad:
        raise ConfigError(f"config key 'pool_layers': {bad!r} are not layer indices in 1..{len(ch)}")


def layer_channels(cfg: Mapping) -> list[int]:
    """Conv widths after the width multiplier (at least one channel each)."""
    return [max(1, int(round(c * cfg["width"]))) for c in cfg["channels"]]


def layer_kernels(cfg: Mapping) -> list[int]:
    ks = cfg["kernel_size"]
    return list(ks) if isinstance(ks, list) else [ks] * len(cfg["channels"])


class _RMSPool2d(torch.autograd.Function):
    """2x2 RMS pooling that saves only its input and output for backward (the composed
    square -> avg_pool -> sqrt keeps a full-resolution x² alive as well)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool2d(x.square(), 2).sqrt()  # exact: an all-zero window stays 0
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, out = ctx.saved_tensors
        # d out / d x = x / (4 out) inside each window; odd trailing rows/columns get nothing
        h, w = out.shape[-2] * 2, out.shape[-1] * 2
        # where a window is all zero its x is zero too, so the clamp only avoids 0/0
        up = F.interpolate(grad / out.clamp_min(1e-12), scale_factor=2.0, mode="nearest")
        gx = torch.zeros_like(x)
        gx[..., :h, :w] = up * x[..., :h, :w] * 0.25
        return gx


def rms_pool2d(x: torch.Tensor) -> torch.Tensor:
    """sqrt(mean of squares) over 2x2 windows: keeps the mean energy that goodness measures."""
    return _RMSPool2d.apply(x)


def pool2d(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "rms":
        return rms_pool2d(x)
    if kind == "avg":
        return F.avg_pool2d(x, 2)
    if kind == "max":
        return F.max_pool2d(x, 2)
    raise ValueError(f"unknown pooling {kind!r}")


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels at every position (the 'channel' norm option)."""

    def __init__(self, channels: int, affine: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, elementwise_affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvBlock(nn.Module):
    """norm (of the previous block's output) -> conv -> ReLU -> optional pooling; why the norm
    starts the next block rather than ending this one: docs/method.md, "Where the norm sits"."""

    def __init__(self, c_in: int, c_out: int, kernel: int, pool: str | None, norm: str, hw_in: int,
                 affine: bool = True) -> None:
        super().__init__()
        if norm == "layernorm" and hw_in:
            self.norm: nn.Module = nn.LayerNorm([c_in, hw_in, hw_in], elementwise_affine=affine)
        elif norm == "channel" and hw_in:
            self.norm = ChannelLayerNorm(c_in, affine)
        else:
            self.norm = nn.Identity()  # the first block sees normalised images
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
        self.pool = pool

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(activation before pooling, block output after pooling)."""
        h = F.relu(self.conv(self.norm(x)))
        return h, (pool2d(h, self.pool) if self.pool else h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block output alone (what `parts` returns second)."""
        if self.pool == "max":
            # ReLU and max pooling commute (the same values and gradients); pooling first
            # leaves ReLU and its backward a quarter of the map
            return F.relu(F.max_pool2d(self.conv(self.norm(x)), 2))
        return self.parts(x)[1]


def build_blocks(cfg: Mapping, in_channels: int, image_size: int) -> tuple[nn.ModuleList, list[int]]:
    """The conv blocks of the spec in `cfg`, and the spatial size after each block."""
    check_backbone(cfg)
    chans, kernels = layer_channels(cfg), layer_kernels(cfg)
    pools = set(cfg["pool_layers"])
    blocks, sizes, c_in, hw = nn.ModuleList(), [], in_channels, image_size
    for i, (c, k) in enumerate(zip(chans, kernels), start=1):
        pool = cfg["pooling"] if i in pools else None
        if pool and hw < 2:
            raise ConfigError(f"config key 'pool_layers': layer {i} pools a {hw}x{hw} map; remove it or use larger inputs")
        blocks.append(ConvBlock(c_in, c, k, pool, cfg["norm"], hw if i > 1 else 0, cfg["norm_affine"]))
        hw = hw // 2 if pool else hw
        sizes.append(hw)
        c_in = c
    return blocks, sizes
