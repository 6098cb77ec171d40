"""Forward-Forward (Hinton 2022) for CNNs as the FF-CNN literature builds it (Scodellaro et al. 2025),
on the shared backbone; every choice, its key and its source: docs/baselines.md, section "FF".
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from asge.backbone import BACKBONE_KEYS, build_blocks
from asge.config import ConfigError, Key, auto_or_positive
from asge.layerlocal import LayerLocalMethod
from asge.method import StepStats
from asge.registry import register_method
from asge.runtime import auto_size

FF_KEYS: dict[str, Key] = {
    **BACKBONE_KEYS,
    # FF's own block: max pooling and no backbone norm (each block's input RMS
    # normalisation is FF's "layer normalisation")
    "pooling": Key("max", (str,), "pooling operator in the pooling layers", choices=("rms", "avg", "max")),
    "norm": Key("none", (str,), "normalisation between blocks (FF: none; every block input is RMS-normalised)",
                choices=("layernorm", "channel", "none")),
    "theta": Key(2.0, (float,), "goodness threshold theta (for mean goodness)", check=lambda v: v > 0, allowed="> 0"),
    "goodness_scale": Key(10.0, (float,), "slope s of the layer loss: softplus(s (theta - G_pos)) + softplus(s (G_neg - theta))",
                          check=lambda v: v > 0, allowed="> 0"),
    "fusion_from": Key(2, (int,), "first layer (1-based) whose goodness the fusion prediction sums",
                       check=lambda v: v >= 1, allowed=">= 1"),
    "label_encoding": Key("random", (str,), "class pattern superimposed on the image (fourier, random) or "
                          "constant one-hot planes beside it (planes; does not learn, kept as a measured variant)",
                          choices=("fourier", "random", "planes")),
    "label_amplitude": Key(1.0, (float,), "RMS of the class pattern relative to the normalised image",
                           check=lambda v: v > 0, allowed="> 0"),
    "label_layers": Key("all", (str,), "which blocks get the label: the input only, or every block (one extra "
                        "pattern channel after the normalisation)", choices=("first", "all")),
    "negatives": Key("random", (str,), "wrong label of a negative: uniform, or in proportion to the goodness "
                     "the net gives it (hard; one extra N-label pass per step)", choices=("random", "hard")),
    "init": Key("kaiming", (str,), "conv weight init: He normal (initial goodness ~1) or torch's default (~0.2)",
                choices=("kaiming", "torch")),
    "trial_batch": Key("auto", (str, int), "most image-label pairs per forward pass at prediction (chunks of "
                       "B*N): auto (4096 on CUDA, 128 on a CPU; the same predictions) or a number",
                       check=auto_or_positive, allowed="auto or >= 1"),
}


def label_planes(labels: torch.Tensor, num_classes: int, height: int, width: int,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[B, N, H, W] constant one-hot planes: plane labels[b] is 1 everywhere, the others 0."""
    return F.one_hot(labels, num_classes).to(dtype)[:, :, None, None].expand(-1, -1, height, width)


def label_patterns(kind: str, num_classes: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """[N, H, W] one fixed pattern per class, each of unit RMS over the whole map.

    fourier: cos(2 pi f (u cos a + v sin a) + phase) with u, v in image widths; classes take
    the orientations a and frequencies f of a grid (ceil(sqrt N) orientations), with f from
    1 cycle per map up to a period of 3 pixels, so no pattern aliases. random: seeded +-1.
    """
    if kind == "random":
        g = torch.Generator().manual_seed(1_000_003 * seed + 7919 * height + width)
        return torch.randint(0, 2, (num_classes, height, width), generator=g).float() * 2 - 1
    n_orient = max(1, math.ceil(math.sqrt(num_classes)))
    n_freq = math.ceil(num_classes / n_orient)
    f_max = max(1.0, min(height, width) / 3)
    v, u = torch.meshgrid(torch.arange(height) / height, torch.arange(width) / width, indexing="ij")
    out = []
    for c in range(num_classes):
        a = math.pi * (c % n_orient) / n_orient
        f = 1.0 + (f_max - 1.0) * (c // n_orient) / max(1, n_freq - 1)
        p = torch.cos(2 * math.pi * f * (u * math.cos(a) + v * math.sin(a)) + math.pi / 4)
        out.append(p / p.square().mean().sqrt().clamp_min(1e-6))
    return torch.stack(out)


def wrong_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A label drawn uniformly from the N - 1 labels other than y (never y itself)."""
    shift = torch.randint(1, num_classes, y.shape, device=y.device)
    return (y + shift) % num_classes


def hard_wrong_labels(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A wrong label drawn with probability softmax(goodness) over the N - 1 wrong labels."""
    p = scores.float().scatter(1, y[:, None], float("-inf")).softmax(1)
    # p / Exp(1) has its argmax distributed as p (the exponential race), with no host sync,
    # where torch.multinomial checks its input on the host at every step
    # (clamped: an exact 0 draw would make 0/0 = NaN for the true label, and argmax picks NaN)
    return (p / torch.empty_like(p).exponential_().clamp_min_(1e-30)).argmax(1)


def length_normalise(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x divided by its root-mean-square over (C, H, W): the direction, at unit scale."""
    rms = x.float().square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
    return x / (rms + eps).to(x.dtype)


def goodness(h: torch.Tensor) -> torch.Tensor:
    """[B] mean of squared activations over (C, H, W), in float32."""
    return h.float().square().mean(dim=(1, 2, 3))


@register_method("ff")
class ForwardForward(LayerLocalMethod):
    """Layer-local Forward-Forward with spatially extended labels and wrong-label negatives."""

    display_name = "FF"
    keys = FF_KEYS
    train_acc_name = "train_posneg_acc"

    @classmethod
    def inference_structure(cls, strategy: str, readouts_used: int, cfg: Mapping[str, Any]) -> tuple[int, int]:
        """The blocks up to the readout used, no head: goodness is compared across N label passes."""
        return readouts_used, 0

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        if cfg.get("dataset") == "imagenet":
            raise ConfigError(
                "method 'ff' does not run on imagenet: FF predicts by running the network once per "
                "candidate label, and N = 1000 label passes per image (at every validation and test) are "
                "impractical; the results table shows FF on ImageNet as 'not run' (see docs/baselines.md)"
            )
        super().check_config(cfg)

    def __init__(self, cfg: Mapping[str, Any], info: Any) -> None:
        super().__init__(cfg, info)
        n, enc = info.num_classes, cfg["label_encoding"]
        self.num_classes = n
        self.planes = enc == "planes"
        extra = n if self.planes else 1  # label channels of a later block (label_layers: all)
        self.blocks, self.sizes = build_blocks(cfg, info.in_channels + (n if self.planes else 0), info.image_size)
        if cfg["label_layers"] == "all":
            for blk in self.blocks[1:]:
                old = blk.conv
                blk.conv = torch.nn.Conv2d(old.in_channels + extra, old.out_channels, old.kernel_size,
                                           padding=old.padding)
        if cfg["init"] == "kaiming":
            for blk in self.blocks:
                torch.nn.init.kaiming_normal_(blk.conv.weight, nonlinearity="relu")
                torch.nn.init.zeros_(blk.conv.bias)
        if not self.planes:  # fixed patterns at the input and at every block's input resolution
            in_sizes = [info.image_size, *self.sizes[:-1]]
            for i, hw in enumerate(in_sizes):
                if i == 0 or cfg["label_layers"] == "all":
                    pat = label_patterns(enc, n, hw, hw, cfg["seed"]) * cfg["label_amplitude"]
                    self.register_buffer(f"pattern{i}", pat[:, None], persistent=False)

    def with_labels(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The image with its label: pattern superimposed ([B, C, H, W]) or planes beside it."""
        if self.planes:
            planes = label_planes(labels, self.num_classes, x.shape[-2], x.shape[-1], x.dtype)
            return torch.cat([x, planes], dim=1)
        return x + self.pattern0[labels].to(x.dtype)

    def block_input(self, i: int, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The normalised input of block i (0-based), with the label where configured."""
        if i == 0:
            return length_normalise(self.with_labels(h, labels))
        if self.cfg["label_layers"] == "first":
            return length_normalise(h)
        if self.planes:
            lab = label_planes(labels, self.num_classes, h.shape[-2], h.shape[-1], h.dtype)
        else:
            lab = getattr(self, f"pattern{i}")[labels].to(h.dtype)
        # after the normalisation, so that the label is not diluted by the features' width
        return torch.cat([length_normalise(h), lab], dim=1)

    def _layer(self, i: int, h: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(goodness [B], block output) of block i for the previous output (or image) h."""
        out = self.blocks[i](self.block_input(i, h, labels))
        return goodness(out), out

    def negative_labels(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The wrong labels of this step's negatives (`negatives` key)."""
        if self.cfg["negatives"] == "random":
            return wrong_labels(y, self.num_classes)
        was = self.training
        self.eval()
        scores = self.predict(self.layer_scores(x), "fusion", 0)  # FF's fused goodness
        self.train(was)
        return hard_wrong_labels(scores, y)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> StepStats:
        b, theta, k = y.shape[0], self.cfg["theta"], self.cfg["goodness_scale"]
        neg = self.negative_labels(x, y)

        def local_loss(g: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
            g_pos, g_neg = g[:b], g[b:]
            loss = (F.softplus(k * (theta - g_pos)) + F.softplus(k * (g_neg - theta))).mean()
            return loss, ((g_pos.detach() > theta).sum(), (g_neg.detach() < theta).sum())

        losses, ok = self.train_layers(torch.cat([x, x], dim=0), local_loss, torch.cat([y, neg], dim=0))
        pos, negs = (torch.stack(c).float() for c in zip(*ok))
        return StepStats(losses, (pos + negs) / 2, {"train_pos_acc": pos, "train_neg_acc": negs})

    @torch.no_grad()
    def eval_counts(self, x: torch.Tensor, y: torch.Tensor,
                    scores: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Per layer: positives with G > theta, and negatives (a wrong label drawn from a
        generator seeded by the batch, so every epoch sees the same negatives) with G < theta.
        Read off the N-label goodness of `layer_scores` (computed here when not given)."""
        scores = self.layer_scores(x) if scores is None else scores
        g = torch.Generator(device="cpu").manual_seed(int(y[:64].sum()) * 131 + y.numel())
        neg = (y + torch.randint(1, self.num_classes, y.shape, generator=g).to(y.device)) % self.num_classes
        theta = self.cfg["theta"]
        pos = torch.stack([(s.gather(1, y[:, None]) > theta).sum() for s in scores])
        negs = torch.stack([(s.gather(1, neg[:, None]) < theta).sum() for s in scores])
        return {"pos_acc": pos.float(), "neg_acc": negs.float()}

    @torch.no_grad()
    def label_goodness(self, x: torch.Tensor, labels: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Goodness [B] of every layer (first `upto`) for the image x with the given labels."""
        return self.readouts(x, labels, upto=upto)[0]

    @torch.no_grad()
    def layer_scores(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        n_cls, b = self.num_classes, x.shape[0]
        per_chunk = max(1, auto_size(self.cfg, "trial_batch", x.device) // n_cls)  # images per forward pass
        chunks: list[list[torch.Tensor]] = []
        for start in range(0, b, per_chunk):
            xc = x[start:start + per_chunk]
            bc = xc.shape[0]
            # image-major: row r is image r // N with label r % N
            reps = xc.unsqueeze(1).expand(bc, n_cls, *xc.shape[1:]).reshape(bc * n_cls, *xc.shape[1:])
            labels = torch.arange(n_cls, device=x.device).repeat(bc)
            chunks.append([g.view(bc, n_cls) for g in self.label_goodness(reps, labels, upto)])
        return [torch.cat(per_layer, dim=0) for per_layer in zip(*chunks)]

    def readout_params(self, strategy: str, best: int, n: int) -> int:
        """The fixed label patterns the first n blocks take in."""
        return sum(getattr(self, f"pattern{i}").numel() for i in range(n) if hasattr(self, f"pattern{i}"))

    def extra_state_for_metrics(self) -> dict[str, Any]:
        return {"label_encoding": self.cfg["label_encoding"], "theta": self.cfg["theta"],
                "goodness_scale": self.cfg["goodness_scale"], "label_layers": self.cfg["label_layers"],
                "negatives": self.cfg["negatives"], "forward_passes_per_prediction": self.num_classes}
