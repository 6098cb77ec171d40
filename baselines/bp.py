"""BP: the very same backbone as ASGE, trained end to end with backpropagation.

The conv blocks come from asge.backbone.build_blocks with the same keys and defaults as ASGE
(conv -> ReLU -> RMS pooling in the pooling layers -> LayerNorm), so that a comparison
isolates the learning rule. The classifier head (`head: gap_linear`, the only choice) is a
global average pool of the last feature map followed by Linear(C_L, N): one cross-entropy
loss, one backward through all blocks. One readout ("head"), one strategy ("last").
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from asge.backbone import BACKBONE_KEYS, build_blocks, check_backbone, layer_channels
from asge.config import Key
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

    keys = BP_KEYS
    layer_local = False
    strategies = ("last",)

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
