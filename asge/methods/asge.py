"""ASGE: every conv block learns from cross-entropy on a fixed random projection of its
spatial patch goodness; no gradient crosses blocks (arXiv 2509.12394, see docs/method.md).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from asge.backbone import BACKBONE_KEYS, build_blocks, layer_channels, pool2d
from asge.config import Key
from asge.goodness import FixedProjection, patch_count, patch_energy
from asge.layerlocal import LayerLocalMethod
from asge.method import StepStats
from asge.registry import register_method

ASGE_KEYS: dict[str, Key] = {
    **BACKBONE_KEYS,
    "alpha": Key(1.0, (float,), "patch-rule exponent: P_l = round((C_L/C_l)^alpha)", check=lambda v: v >= 0, allowed=">= 0"),
    "min_patches": Key(1, (int,), "lower bound on P_l", check=lambda v: v >= 1, allowed=">= 1"),
    "goodness_site": Key("after_pool", (str,), "where goodness is taken", choices=("after_pool", "before_pool")),
    "goodness_reduction": Key("mean", (str,), "patch energy: mean or sum of squares", choices=("mean", "sum")),
    "logit_scale": Key(10.0, (float,), "fixed factor on the projected logits", check=lambda v: v > 0, allowed="> 0"),
    "projection_init": Key("gaussian", (str,), "fixed projection weights", choices=("gaussian", "orthogonal", "rademacher")),
    "projection_bias": Key("zero", (str,), "fixed projection bias", choices=("zero", "random")),
    "projection_trainable": Key(False, (bool,), "train the projection with its layer (an ablation: not ASGE)"),
    "label_smoothing": Key(0.0, (float,), "label smoothing of the local cross-entropy",
                           check=lambda v: 0 <= v < 1, allowed="0 <= v < 1"),
    "fusion_from": Key(2, (int,), "first layer (1-based) summed by Fusion Pred", check=lambda v: v >= 1, allowed=">= 1"),
    "execution": Key("per_layer", (str,), "backward per layer (lean memory) or one fused backward",
                     choices=("per_layer", "fused")),
}


@register_method("asge")
class ASGE(LayerLocalMethod):
    """Layer-local training with adaptive spatial goodness and fixed random projections."""

    display_name = "ASGE"
    keys = ASGE_KEYS

    @classmethod
    def inference_structure(cls, strategy: str, readouts_used: int, cfg: Mapping[str, Any]) -> tuple[int, int]:
        """The blocks up to the readout used; one fixed projection per readout used (Fusion: every
        readout from `fusion_from` on)."""
        return readouts_used, (readouts_used - int(cfg.get("fusion_from") or 1) + 1) if strategy == "fusion" else 1

    def __init__(self, cfg: Mapping[str, Any], info: Any) -> None:
        super().__init__(cfg, info)
        self.blocks, sizes = build_blocks(cfg, info.in_channels, info.image_size)
        chans = layer_channels(cfg)
        gen = torch.Generator().manual_seed(10_007 * cfg["seed"] + 17)
        self.patches: list[int] = []
        heads = []
        for i, (c, hw) in enumerate(zip(chans, sizes)):
            site_hw = hw * 2 if (cfg["goodness_site"] == "before_pool" and self.blocks[i].pool) else hw
            p = patch_count(c, chans[-1], site_hw, cfg["alpha"], cfg["min_patches"])
            self.patches.append(p)
            heads.append(FixedProjection(c * p * p, info.num_classes, cfg["projection_init"],
                                         cfg["projection_bias"], cfg["logit_scale"], gen,
                                         cfg["projection_trainable"]))
        self.heads = torch.nn.ModuleList(heads)

    def _layer(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, block output) of block i for input x."""
        h, p = self.blocks[i].parts(x)
        site = h if self.cfg["goodness_site"] == "before_pool" else p
        g = patch_energy(site, self.patches[i], self.cfg["goodness_reduction"])
        # goodness is float32; under autocast its fixed projection stays float32 too (a
        # [B, C P^2] x [C P^2, N] product costs nothing, and the logits keep full precision)
        with torch.autocast(g.device.type, enabled=False):
            return self.heads[i](g), p

    def train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> StepStats:
        def local_loss(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.cfg["label_smoothing"])
            return loss, (logits.detach().argmax(1) == y).sum()

        losses, correct = self.train_layers(x, local_loss, fused=self.cfg["execution"] == "fused")
        return StepStats(losses, torch.stack(correct))

    @torch.no_grad()
    def layer_scores(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        return [logits.float() for logits in self.readouts(x, upto=upto)[0]]

    def fusion_term(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.softmax(1)  # Fusion Pred sums class probabilities

    def readout_params(self, strategy: str, best: int, n: int) -> int:
        used = range(n - 1, n) if strategy != "fusion" else range(self.cfg["fusion_from"] - 1, n)
        # the last block's norm output is not needed by its own head, but it is tiny; count it
        return sum(self.heads[i].weight.numel() + self.heads[i].bias.numel() for i in used)

    def diagnostics(self, x: torch.Tensor) -> dict[str, Any]:
        """Fig. 4 data: the goodness distributions of the first 64 images of x."""
        return {"goodness": self.goodness_distributions(x[:64])}

    def extra_state_for_metrics(self) -> dict[str, Any]:
        return {"patches": self.patches, "goodness_dims": [h.weight.shape[1] for h in self.heads]}

    @torch.no_grad()
    def goodness_distributions(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fig. 4 data: for every pooling layer, patch goodness before pooling ('origin') and
        after RMS, average and max pooling of the same activation (same patch rule)."""
        out: dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            h, nxt = block.parts(x)
            if block.pool:
                p, red = self.patches[i], self.cfg["goodness_reduction"]
                out[f"layer{i + 1}_origin"] = patch_energy(h, p, red).flatten().cpu()
                for kind in ("rms", "avg", "max"):
                    out[f"layer{i + 1}_{kind}"] = patch_energy(pool2d(h, kind), p, red).flatten().cpu()
                out[f"layer{i + 1}_channels"] = torch.tensor(h.shape[1])
            x = nxt
        return out
