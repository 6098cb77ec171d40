"""BP: the same backbone as ASGE (or a conventional VGG, `bpvgg`) trained end to end with backpropagation,
so that a comparison isolates the learning rule (docs/baselines.md, section "BP").
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from asge.backbone import BACKBONE_KEYS, build_blocks, check_backbone, layer_channels
from asge.config import ConfigError, Key
from asge.method import Method, StepStats
from asge.registry import register_method

BP_KEYS: dict[str, Key] = {
    **BACKBONE_KEYS,
    "head": Key("gap_linear", (str,), "classifier head: global average pool of the last map, then Linear(C_L, N)",
                choices=("gap_linear",)),
}


@register_method("bp")
class Backprop(Method):
    """End-to-end backpropagation through the shared backbone and a linear head."""

    display_name = "BP"
    keys = BP_KEYS
    layer_local = False
    strategies = ("last",)

    @classmethod
    def inference_structure(cls, strategy: str, readouts_used: int, cfg: Mapping[str, Any]) -> tuple[int | None, int]:
        """Every conv block and the linear head (its one readout)."""
        return len(cfg.get("channels") or []) or None, 1

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        check_backbone(cfg)

    def __init__(self, cfg: Mapping[str, Any], info: Any) -> None:
        super().__init__(cfg, info)
        self.blocks, _ = build_blocks(cfg, info.in_channels, info.image_size)
        self.head = nn.Linear(layer_channels(cfg)[-1], info.num_classes)

    @property
    def readout_names(self) -> list[str]:
        return ["head"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=(2, 3)))

    def train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> StepStats:
        logits = self(x).float()
        loss = F.cross_entropy(logits, y)
        loss.backward()
        correct = (logits.detach().argmax(1) == y).sum()
        return StepStats(loss.detach().reshape(1), correct.reshape(1))

    @torch.no_grad()
    def layer_scores(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        return [self(x).float()]

    def inference_params(self, strategy: str, best: int) -> int:
        return sum(p.numel() for p in self.parameters())


BPVGG_KEYS: dict[str, Key] = {
    "channels": Key([128, 128, 256, 256, 512, 512, 512, 512], (list,), "output channels of each conv layer (VGG8)"),
    "kernel_size": Key(3, (int,), "conv kernel size (stride 1, 'same' padding)",
                       check=lambda v: v >= 1 and v % 2 == 1, allowed="a positive odd integer"),
    "pool_layers": Key([2, 4, 6, 8], (list,), "1-based indices of the layers that end with 2x2 max pooling"),
    "width": Key(1.0, (float,), "multiplier on every entry of `channels`", check=lambda v: v > 0, allowed="> 0"),
}


@register_method("bpvgg")
class ConventionalVGG(Backprop):
    """BP on a conventional VGG: conv -> BatchNorm -> ReLU -> max-pool, GAP + linear head (the
    literature's kind of BP net; docs/baselines.md, section "BP")."""

    display_name = "BP (VGG)"
    keys = BPVGG_KEYS

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        check_backbone(cfg)

    def __init__(self, cfg: Mapping[str, Any], info: Any) -> None:
        Method.__init__(self, cfg, info)
        chans, pools = layer_channels(cfg), set(cfg["pool_layers"])
        blocks, c_in, hw = nn.ModuleList(), info.in_channels, info.image_size
        for i, c in enumerate(chans, start=1):
            layers: list[nn.Module] = [nn.Conv2d(c_in, c, cfg["kernel_size"], padding=cfg["kernel_size"] // 2, bias=False),
                                       nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            if i in pools:
                if hw < 2:
                    raise ConfigError(f"config key 'pool_layers': layer {i} pools a {hw}x{hw} map; remove it")
                layers.append(nn.MaxPool2d(2))
                hw //= 2
            blocks.append(nn.Sequential(*layers))
            c_in = c
        self.blocks = blocks
        self.head = nn.Linear(c_in, info.num_classes)
