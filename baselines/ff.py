"""Forward-Forward (Hinton 2022) adapted to CNNs, on the shared VGG-style backbone.

Per layer: the input is normalised by its length over (C, H, W), so only its direction passes
on; then conv 3x3 -> ReLU -> optional pooling (max by default). The shared backbone's `norm`
(which sits at the start of every block but the first) is "none" by default for FF: the length
normalisation is FF's own "layer normalisation". Choices this module makes, each documented
here and in BASELINES.md:

- Length normalisation divides by the root-mean-square over (C, H, W), i.e. by the length
  divided by sqrt(C*H*W). The direction is the same as with the plain length; the constant
  factor keeps the activations at unit scale, so that the goodness threshold theta = 2 for
  *mean* goodness is reachable without huge weights. Every layer's input is normalised,
  the first one included (image and label planes together).
- Label injection: N extra constant input planes (plane n is 1 everywhere when the label is n,
  else 0) are concatenated to the image, so the first conv has in_channels + N inputs. For a
  conv the planes act as a label-dependent bias per output channel (except at the zero-padded
  border). Variant `label_layers: all` concatenates the planes to every block's input (before
  its length normalisation), so every layer sees the label directly, not only through the
  previous layer's output; it did not help on MNIST (same setting as below, s = 1: last layer
  46.8 vs 44.0 %, fusion 44.9 vs 49.0 %), so the default is `first`, FF's own scheme.
- FF needs many optimiser steps: with the default settings it is at chance for the first
  few hundred steps (e.g. 2-4 epochs of 3000-10000 images at batch 128) and only then starts to
  separate; short smoke runs say nothing about its final accuracy.
- Positives carry the true label; negatives the same image with a wrong label drawn uniformly
  from the N - 1 others, (y + U{1..N-1}) mod N, so a negative never carries the true label.
- Goodness of a layer: mean of squared activations over (C, H, W) of the block's output
  after its pooling step. Layer loss, averaged over the batch:
  softplus(s (theta - G_pos)) + softplus(s (G_neg - theta)), with the slope s = `goodness_scale`
  (default 10). s = 1 is the loss written with mean goodness; FF's original loss uses the *sum*
  of squares over the units, i.e. a slope of (number of units) on the mean scale, so with mean
  goodness the logits are tiny (a whole-map goodness gap of 0.05 moves the loss by ~1 %), every
  sample sits in the near-linear part of the softplus and the layer learns slowly. Measured on
  MNIST (300 images/class, channels [32, 64, 128], pooling after every layer, batch 16, lr 2e-3,
  10 epochs, 1000 validation images, one seed): fusion 49.0 / 55.4 / 57.1 % and last layer
  44.0 / 55.6 / 56.8 % for s = 1 / 4 / 10. The threshold theta is unchanged; s only sharpens the
  softplus around it. Positives and negatives run as one batch
  of 2B; each layer's input is detached and each layer calls backward right after its
  forward (the graph of a layer is freed before the next one runs).
- Training statistics per layer: the fraction of positives with G > theta and of negatives
  with G < theta (extra "pos_acc" and "neg_acc": the data of the ASGE paper's Fig. 1), and
  as "train_acc" their mean.
- Prediction: the network is run once per candidate label; the N label trials of a batch run
  as one batch of B*N (chunked by images to at most `trial_batch` rows, never a Python loop
  over labels). Every layer yields goodness for every label, [B, N]; strategies: "fusion"
  (sum of the raw goodness over layers fusion_from..L, FF's own rule with fusion_from = 2),
  "last" and "best" (validation-selected layer; the later layers are dropped).
- ImageNet: the N label passes make inference (and every epoch's validation) cost N forward
  passes per image; at N = 1000 that is impractical, so `check_config` refuses the imagenet
  data set with a ConfigError and the results table shows FF on ImageNet as "not run"
  (BASELINES.md allows either a one-pass readout or "not run"; a one-pass readout would no
  longer be FF's prediction rule, so we do not invent one).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from asge.backbone import BACKBONE_KEYS, build_blocks, check_backbone
from asge.config import ConfigError, Key
from asge.method import Method, StepStats
from asge.registry import register_method

FF_KEYS: dict[str, Key] = {
    **BACKBONE_KEYS,
    # FF's own block: max pooling and no backbone norm (each block's input length
    # normalisation is FF's "layer normalisation")
    "pooling": Key("max", (str,), "pooling operator in the pooling layers", choices=("rms", "avg", "max")),
    "norm": Key("none", (str,), "normalisation between blocks (FF: none; every block input is length-normalised)",
                choices=("layernorm", "channel", "none")),
    "theta": Key(2.0, (float,), "goodness threshold theta (for mean goodness)", check=lambda v: v > 0, allowed="> 0"),
    "goodness_scale": Key(10.0, (float,), "slope s of the layer loss: softplus(s (theta - G_pos)) + softplus(s (G_neg - theta))",
                          check=lambda v: v > 0, allowed="> 0"),
    "fusion_from": Key(2, (int,), "first layer (1-based) whose goodness the fusion prediction sums",
                       check=lambda v: v >= 1, allowed=">= 1"),
    "label_layers": Key("first", (str,), "which blocks get the label planes: the first only, or every block's input",
                        choices=("first", "all")),
    "trial_batch": Key(4096, (int,), "most image-label pairs per forward pass at prediction (chunks of B*N)",
                       check=lambda v: v >= 1, allowed=">= 1"),
}


def label_planes(labels: torch.Tensor, num_classes: int, height: int, width: int,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[B, N, H, W] constant one-hot planes: plane labels[b] is 1 everywhere, the others 0."""
    return F.one_hot(labels, num_classes).to(dtype)[:, :, None, None].expand(-1, -1, height, width)


def wrong_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A label drawn uniformly from the N - 1 labels other than y (never y itself)."""
    shift = torch.randint(1, num_classes, y.shape, device=y.device)
    return (y + shift) % num_classes


def length_normalise(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x divided by its root-mean-square over (C, H, W): the direction, at unit scale."""
    rms = x.float().square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
    return x / (rms + eps).to(x.dtype)


def goodness(h: torch.Tensor) -> torch.Tensor:
    """[B] mean of squared activations over (C, H, W), in float32."""
    return h.float().square().mean(dim=(1, 2, 3))


@register_method("ff")
class ForwardForward(Method):
    """Layer-local Forward-Forward with label planes, positives and wrong-label negatives."""

    keys = FF_KEYS
    layer_local = True
    strategies = ("fusion", "last", "best")

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        if cfg.get("dataset") == "imagenet":
            raise ConfigError(
                "method 'ff' does not run on imagenet: FF predicts by running the network once per "
                "candidate label, and N = 1000 label passes per image (at every validation and test) are "
                "impractical; the results table shows FF on ImageNet as 'not run' (see baselines/ff.py)"
            )
        check_backbone(cfg)
        if cfg["fusion_from"] > len(cfg["channels"]):
            raise ConfigError(f"config key 'fusion_from': {cfg['fusion_from']} exceeds the {len(cfg['channels'])} layers")

    def __init__(self, cfg: Mapping[str, Any], info: Any) -> None:
        super().__init__(cfg, info)
        self.num_classes = info.num_classes
        self.blocks, self.sizes = build_blocks(cfg, info.in_channels + info.num_classes, info.image_size)
        if cfg["label_layers"] == "all":  # every later block also sees the N label planes
            for blk in self.blocks[1:]:
                old = blk.conv
                blk.conv = torch.nn.Conv2d(old.in_channels + info.num_classes, old.out_channels, old.kernel_size,
                                           padding=old.padding)

    @property
    def readout_names(self) -> list[str]:
        return [f"layer{i}" for i in range(1, len(self.blocks) + 1)]

    def with_labels(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The image with its label planes: [B, in_channels + N, H, W]."""
        planes = label_planes(labels, self.num_classes, x.shape[-2], x.shape[-1], x.dtype)
        return torch.cat([x, planes], dim=1)

    def block_input(self, i: int, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The length-normalised input of block i (0-based), with label planes where configured."""
        if i > 0 and self.cfg["label_layers"] == "first":
            return length_normalise(h)
        return length_normalise(self.with_labels(h, labels))

    def _layer(self, i: int, h: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(goodness [B], block output) of block i for the previous output (or image) h."""
        _, out = self.blocks[i].parts(self.block_input(i, h, labels))
        return goodness(out), out

    def train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> StepStats:
        b, theta, k = y.shape[0], self.cfg["theta"], self.cfg["goodness_scale"]
        neg = wrong_labels(y, self.num_classes)
        h, labels = torch.cat([x, x], dim=0), torch.cat([y, neg], dim=0)
        losses, correct, pos_ok, neg_ok = [], [], [], []
        for i in range(len(self.blocks)):
            g, out = self._layer(i, h.detach(), labels)
            g_pos, g_neg = g[:b], g[b:]
            loss = (F.softplus(k * (theta - g_pos)) + F.softplus(k * (g_neg - theta))).mean()
            loss.backward()  # frees this block's graph before the next block runs
            losses.append(loss.detach())
            p_ok, n_ok = (g_pos.detach() > theta).sum(), (g_neg.detach() < theta).sum()
            pos_ok.append(p_ok)
            neg_ok.append(n_ok)
            correct.append((p_ok + n_ok).float() / 2)
            h = out.detach()
        return StepStats(torch.stack(losses), torch.stack(correct),
                         {"pos_acc": torch.stack(pos_ok).float(), "neg_acc": torch.stack(neg_ok).float()})

    @torch.no_grad()
    def label_goodness(self, x: torch.Tensor, labels: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Goodness [B] of every layer (first `upto`) for the image x with the given labels."""
        h, out = x, []
        for i in range(upto or len(self.blocks)):
            g, h = self._layer(i, h, labels)
            out.append(g)
        return out

    @torch.no_grad()
    def layer_scores(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        n_cls, b = self.num_classes, x.shape[0]
        per_chunk = max(1, self.cfg["trial_batch"] // n_cls)  # images per forward pass
        chunks: list[list[torch.Tensor]] = []
        for start in range(0, b, per_chunk):
            xc = x[start:start + per_chunk]
            bc = xc.shape[0]
            # image-major: row r is image r // N with label r % N
            reps = xc.unsqueeze(1).expand(bc, n_cls, *xc.shape[1:]).reshape(bc * n_cls, *xc.shape[1:])
            labels = torch.arange(n_cls, device=x.device).repeat(bc)
            chunks.append([g.view(bc, n_cls) for g in self.label_goodness(reps, labels, upto)])
        return [torch.cat(per_layer, dim=0) for per_layer in zip(*chunks)]

    def predict(self, scores: list[torch.Tensor], strategy: str, best: int) -> torch.Tensor:
        if strategy == "fusion":
            return torch.stack(scores[self.cfg["fusion_from"] - 1:]).sum(0)
        return super().predict(scores, strategy, best)

    def inference_params(self, strategy: str, best: int) -> int:
        n = self.inference_layers(strategy, best)
        return sum(p.numel() for blk in self.blocks[:n] for p in blk.parameters())

    def extra_state_for_metrics(self) -> dict[str, Any]:
        return {"label_planes": self.num_classes, "theta": self.cfg["theta"],
                "goodness_scale": self.cfg["goodness_scale"], "label_layers": self.cfg["label_layers"],
                "forward_passes_per_prediction": self.num_classes}
