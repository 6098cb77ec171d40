"""Shared base of the layer-local methods (ASGE, FF, CwC-FF): per-layer readouts, the training
loop over detached layers and the fusion prediction (docs/method.md#layer-local-methods)."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from asge.backbone import check_backbone
from asge.config import ConfigError
from asge.method import Method

#: local_loss(readout of a layer) -> (that layer's loss, whatever the method counts on it)
LocalLoss = Callable[[torch.Tensor], tuple[torch.Tensor, Any]]


def check_fusion_from(cfg: Mapping[str, Any]) -> None:
    """Refuse a `fusion_from` layer beyond the last layer."""
    if cfg["fusion_from"] > len(cfg["channels"]):
        raise ConfigError(f"config key 'fusion_from': {cfg['fusion_from']} exceeds the {len(cfg['channels'])} layers")


class LayerLocalMethod(Method):
    """Blocks that each learn from their own readout on a detached input; no gradient crosses blocks.

    A subclass sets `self.blocks` and implements `_layer(i, h, *args) -> (readout, block output)`.
    """

    layer_local = True
    strategies: tuple[str, ...] = ("fusion", "last", "best")
    strategy_names = {"fusion": "Fusion", "last": "Last", "best": "Best"}

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        check_backbone(cfg)
        check_fusion_from(cfg)

    @property
    def depth(self) -> int:
        """Number of layer-local blocks (each has one readout)."""
        return len(self.blocks)

    @property
    def readout_names(self) -> list[str]:
        return [f"layer{i}" for i in range(1, self.depth + 1)]

    def _layer(self, i: int, h: torch.Tensor, *args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(readout, block output) of block i (0-based) for its input h."""
        raise NotImplementedError

    def readouts(self, x: torch.Tensor, *args: Any, upto: int | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The readout of every block (the first `upto`) in one pass, and the last output."""
        out = []
        for i in range(upto or self.depth):
            r, x = self._layer(i, x, *args)
            out.append(r)
        return out, x

    def train_layers(self, h: torch.Tensor, local_loss: LocalLoss, *args: Any,
                     fused: bool = False) -> tuple[torch.Tensor, list[Any]]:
        """Train every block on its detached input: ([L] detached losses, per-layer counts).

        Each layer's backward runs right after its forward (only one graph alive), or, with
        `fused`, once on the summed losses (the same gradients: no gradient crosses layers).
        """
        losses, counts, pending = [], [], []
        for i in range(self.depth):
            r, out = self._layer(i, h.detach(), *args)
            loss, count = local_loss(r)
            if fused:
                pending.append(loss)
            else:
                loss.backward()  # frees this block's graph before the next block runs
            losses.append(loss.detach())
            counts.append(count)
            h = out.detach()
        if pending:
            torch.stack(pending).sum().backward()
        return torch.stack(losses), counts

    def fusion_term(self, scores: torch.Tensor) -> torch.Tensor:
        """What the fusion prediction sums of one readout (default: its scores as they are)."""
        return scores

    def predict(self, scores: list[torch.Tensor], strategy: str, best: int) -> torch.Tensor:
        if strategy == "fusion":  # sum over the readouts from layer `fusion_from` on
            return torch.stack([self.fusion_term(s) for s in scores[self.cfg["fusion_from"] - 1:]]).sum(0)
        return super().predict(scores, strategy, best)

    def readout_params(self, strategy: str, best: int, n: int) -> int:
        """Fixed or trained values the readouts of `strategy` need besides the first n blocks."""
        return 0

    def inference_params(self, strategy: str, best: int) -> int:
        n = self.inference_layers(strategy, best)
        blocks = sum(p.numel() for b in self.blocks[:n] for p in b.parameters())
        return blocks + self.readout_params(strategy, best, n)
