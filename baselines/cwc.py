"""CwC-FF: channel-wise competitive Forward-Forward (Papachristodoulou et al., AAAI 2024; official code
github.com/andreaspapac/CwComp); every choice and its key: docs/baselines.md, section "CwC-FF".
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from asge.config import ConfigError, Key
from asge.layerlocal import LayerLocalMethod
from asge.method import StepStats
from asge.registry import register_method


def _is_windows(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(w, list) and len(w) == 2 and all(isinstance(e, int) and not isinstance(e, bool) for e in w)
        and 0 <= w[0] < w[1] for w in v)


CWC_KEYS: dict[str, Key] = {
    "channels": Key([20, 80, 240, 480], (list,), "output channels of each conv layer (CFSE for 10 classes)"),
    "groups": Key([1, 10, 1, 10], (list,), "conv groups of each layer (1 = standard conv, N = class-grouped CFSE conv)"),
    "pool_layers": Key([2, 4], (list,), "1-based indices of the layers that end with 2x2 max pooling"),
    "kernel_size": Key(3, (int,), "conv kernel size (stride 1, 'same' padding)",
                       check=lambda v: v >= 1 and v % 2 == 1, allowed="a positive odd integer"),
    "ilt_windows": Key(None, (list, type(None)), "per layer [start, end) epochs in which it trains (null = always)",
                       check=_is_windows, allowed="null or a list of [start, end] integer pairs, 0 <= start < end"),
    "superclass_layers": Key(0, (int,), "the first k layers train on superclasses of consecutive labels",
                             check=lambda v: v >= 0, allowed=">= 0"),
    "superclasses": Key(20, (int,), "number of superclasses (groups of N/S consecutive labels)",
                        check=lambda v: v >= 2, allowed=">= 2"),
    "goodness_site": Key("after_norm", (str,), "class goodness on the block output after BatchNorm (official) or before",
                         choices=("after_norm", "before_norm")),
    "sf_input": Key("flatten", (str,), "input of the Sf head: flattened last-layer output or its global average",
                    choices=("flatten", "gap")),
    "sf_lr": Key(None, (float, type(None)), "learning rate of the Sf head (null = the run's lr)",
                 check=lambda v: v is None or v > 0, allowed="null or > 0"),
    "sf_optimizer": Key("sgd", (str,), "the Sf head's optimiser: its own plain SGD (official) or the run's optimiser",
                        choices=("sgd", "run")),
    "sf_loss": Key("double_softmax", (str,), "the Sf head's loss: cross-entropy of softmax(logits), the official "
                   "double softmax, or plain cross-entropy of the logits", choices=("double_softmax", "ce")),
    "sf_start_epoch": Key(0, (int,), "first epoch (0-based) in which the Sf head trains",
                          check=lambda v: v >= 0, allowed=">= 0"),
    "bn_refresh": Key(True, (bool,), "after each optimiser step, pass the batch once more (no gradient, train "
                      "mode) so BatchNorm's running statistics also see the updated weights, as the official code does"),
}

BN_EPS = 1e-4  # the official code's BatchNorm2d(eps=1e-4)


def group_goodness(h: torch.Tensor, n_groups: int) -> torch.Tensor:
    """[B, K] class goodness: mean of h^2 over each of K contiguous channel groups and all positions."""
    b, c = h.shape[:2]
    return h.float().reshape(b, n_groups, c // n_groups, *h.shape[2:]).square().flatten(2).mean(2)


def cwc_loss(g: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The CwC loss: softmax cross-entropy with the class goodness values as logits."""
    return F.cross_entropy(g, target)


def class_groups(cfg: Mapping[str, Any], num_classes: int) -> list[int]:
    """Number of class groups (K) of every layer: superclasses in the first layers, else N."""
    k = cfg["superclass_layers"]
    return [cfg["superclasses"] if i < k else num_classes for i in range(len(cfg["channels"]))]


def check_architecture(cfg: Mapping[str, Any], num_classes: int | None, in_channels: int | None) -> None:
    """Cross-key checks; the class-count checks run where the count is known."""
    ch, groups, pools = cfg["channels"], cfg["groups"], cfg["pool_layers"]
    if not ch or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in ch):
        raise ConfigError(f"config key 'channels': {ch!r} must be a non-empty list of positive integers")
    if len(groups) != len(ch) or not all(isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in groups):
        raise ConfigError(f"config key 'groups': {groups!r} must hold one positive integer per layer ({len(ch)})")
    bad = [p for p in pools if not isinstance(p, int) or not 1 <= p <= len(ch)]
    if bad:
        raise ConfigError(f"config key 'pool_layers': {bad!r} are not layer indices in 1..{len(ch)}")
    if cfg["ilt_windows"] is not None and len(cfg["ilt_windows"]) != len(ch):
        raise ConfigError(f"config key 'ilt_windows': {cfg['ilt_windows']!r} must hold one [start, end] pair per "
                          f"layer ({len(ch)})")
    if cfg["superclass_layers"] >= len(ch):
        raise ConfigError(f"config key 'superclass_layers': {cfg['superclass_layers']} must be below the {len(ch)} "
                          f"layers (the last layer predicts the fine classes)")
    c_in = in_channels
    for i, (c, g) in enumerate(zip(ch, groups), start=1):
        if c_in is not None and (c_in % g or c % g):
            raise ConfigError(f"config keys 'groups'/'channels': layer {i} is a conv with groups={g} from {c_in} to {c} "
                              f"channels; both must be multiples of its groups (channels {ch!r}, groups {groups!r})")
        c_in = c
    if num_classes is None:
        return
    if cfg["superclass_layers"] and num_classes % cfg["superclasses"]:
        raise ConfigError(f"config key 'superclasses': {cfg['superclasses']} does not divide the {num_classes} classes "
                          f"into groups of consecutive labels")
    for i, (c, k) in enumerate(zip(ch, class_groups(cfg, num_classes)), start=1):
        if c % k:
            what = f"{k} superclasses" if i <= cfg["superclass_layers"] else f"{num_classes} classes"
            raise ConfigError(
                f"config key 'channels': {ch!r}: layer {i} has {c} channels, not a multiple of its {what}; CwC-FF "
                f"splits every layer's channels into one group per class (the data set has {num_classes} classes), "
                f"so channels must grow with the class count")


class CwCLayer(nn.Module):
    """conv (groups g) -> ReLU -> optional 2x2 max-pool -> BatchNorm; also returns the goodness site."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int, pool: bool, site: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups)
        self.pool = pool
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.site = site

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tensor the class goodness is taken on, block output)."""
        h = F.relu(self.conv(x))
        if self.pool:
            h = F.max_pool2d(h, 2)
        out = self.bn(h)
        return (out if self.site == "after_norm" else h), out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts(x)[1]


@register_method("cwc")
class CwCFF(LayerLocalMethod):
    """Channel-wise competitive layer-local learning with CFSE blocks, ILT and GA/Sf predictors."""

    display_name = "CwC-FF"
    keys = CWC_KEYS
    strategies = ("ga", "sf")
    strategy_names = {"ga": "GA", "sf": "Sf"}
    headline_strategies = ("ga", "sf")  # the CwC-FF paper reports both predictors

    @classmethod
    def inference_structure(cls, strategy: str, readouts_used: int, cfg: Mapping[str, Any]) -> tuple[int | None, int]:
        """Every conv block; GA reads the last block's class goodness (no head), Sf adds its softmax head."""
        return len(cfg.get("channels") or []) or None, 1 if strategy == "sf" else 0

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        from asge.data.catalog import DATASETS

        n_cls = c_in = None
        if cfg.get("dataset") in DATASETS:
            n_cls, c_in = DATASETS[cfg["dataset"]].num_classes, DATASETS[cfg["dataset"]].in_channels
        check_architecture(cfg, n_cls, c_in)

    def __init__(self, cfg: Mapping[str, Any], info: Any) -> None:
        super().__init__(cfg, info)
        n = self.num_classes = info.num_classes
        check_architecture(cfg, n, info.in_channels)
        self.class_groups = class_groups(cfg, n)
        pools = set(cfg["pool_layers"])
        layers, c_in, hw = [], info.in_channels, info.image_size
        for i, (c, g) in enumerate(zip(cfg["channels"], cfg["groups"]), start=1):
            if i in pools and hw < 2:
                raise ConfigError(f"config key 'pool_layers': layer {i} pools a {hw}x{hw} map; remove it or use larger inputs")
            layers.append(CwCLayer(c_in, c, cfg["kernel_size"], g, i in pools, cfg["goodness_site"]))
            c_in, hw = c, (hw // 2 if i in pools else hw)
        self.layers = nn.ModuleList(layers)
        self.feature_shape = (c_in, hw, hw)
        self.head = nn.Linear(c_in * hw * hw if cfg["sf_input"] == "flatten" else c_in, n)
        # the official head's own optimiser: plain SGD (stateless, so nothing to checkpoint)
        self.head_opt = (torch.optim.SGD(self.head.parameters(), lr=cfg["sf_lr"] or cfg["lr"])
                         if cfg["sf_optimizer"] == "sgd" else None)

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def readout_names(self) -> list[str]:
        return super().readout_names + ["sf_head"]

    def param_groups(self) -> list[dict]:
        if self.head_opt is not None:  # the head is stepped by its own SGD in after_step
            return [{"params": list(self.layers.parameters())}]
        head = {"params": list(self.head.parameters())}
        if self.cfg["sf_lr"] is not None:
            head["lr"] = self.cfg["sf_lr"]
        return [{"params": list(self.layers.parameters())}, head]

    # --- pieces ------------------------------------------------------------------------
    def _targets(self, i: int, y: torch.Tensor) -> torch.Tensor:
        return y // (self.num_classes // self.class_groups[i])

    def _fine_scores(self, i: int, g: torch.Tensor) -> torch.Tensor:
        """[B, N] readout of layer i: superclass scores repeated over their fine classes."""
        k = self.class_groups[i]
        return g if k == self.num_classes else g.repeat_interleave(self.num_classes // k, dim=1)

    def _layer(self, i: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, N] readout, output) of layer i."""
        site, out = self.layers[i].parts(h)
        return self._fine_scores(i, group_goodness(site, self.class_groups[i])), out

    def _layer_active(self, i: int, epoch: int) -> bool:
        w = self.cfg["ilt_windows"]
        return w is None or w[i][0] <= epoch < w[i][1]

    def _head_logits(self, h: torch.Tensor) -> torch.Tensor:
        f = h.flatten(1) if self.cfg["sf_input"] == "flatten" else h.mean(dim=(2, 3))
        return self.head(f)

    # --- training ----------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> StepStats:
        b = y.shape[0]
        losses, correct, own, trained = [], [], [], []
        h = x
        for i, layer in enumerate(self.layers):
            active = self._layer_active(i, epoch)
            t = self._targets(i, y)
            with torch.enable_grad() if active else torch.no_grad():
                site, out = layer.parts(h.detach())
                g = group_goodness(site, self.class_groups[i])
                loss = cwc_loss(g, t)
            if active:
                loss.backward()  # frees this layer's graph before the next layer runs
            g = g.detach()
            losses.append(loss.detach())
            correct.append((self._fine_scores(i, g).argmax(1) == y).sum())
            own.append((g.argmax(1) == t).sum())
            trained.append(b if active else 0)
            h = out.detach()
        active = epoch >= self.cfg["sf_start_epoch"]
        with torch.enable_grad() if active else torch.no_grad():
            logits = self._head_logits(h).float()
            loss = F.cross_entropy(logits.softmax(1) if self.cfg["sf_loss"] == "double_softmax" else logits, y)
        if active:
            loss.backward()
        losses.append(loss.detach())
        hits = (logits.detach().argmax(1) == y).sum()
        correct.append(hits)
        own.append(hits)
        trained.append(b if active else 0)
        return StepStats(torch.stack(losses), torch.stack(correct),
                         {"group_acc": torch.stack(own).float(),
                          # a device-side fill per readout, not a host-to-device copy each step
                          "trained": torch.stack([torch.full((), float(t), device=y.device) for t in trained])})

    @torch.no_grad()
    def after_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> None:
        if self.head_opt is not None:
            self.head_opt.step()  # no-op while the head has no gradient (before sf_start_epoch)
            self.head_opt.zero_grad(set_to_none=True)
        # the official loop's second running-statistics update, from the new weights (without
        # it the eval-mode statistics lag the weights; measured in docs/baselines.md, "CwC-FF")
        if self.cfg["bn_refresh"]:
            h = x
            for layer in self.layers:
                h = layer(h)

    # --- evaluation --------------------------------------------------------------------
    @torch.no_grad()
    def layer_scores(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        n_layers = len(self.layers)
        upto = n_layers + 1 if upto is None else upto
        n_conv = min(upto, n_layers)
        scores, h = self.readouts(x, upto=n_conv) if n_conv else ([], x)
        if upto > n_layers:
            scores.append(self._head_logits(h).float())
        return scores

    def predict(self, scores: list[torch.Tensor], strategy: str, best: int) -> torch.Tensor:
        n_layers = len(self.layers)
        if strategy == "ga":
            return scores[n_layers - 1]  # the last layer's class goodness
        if strategy == "sf":
            return scores[n_layers]  # the softmax head's logits
        if strategy == "best":
            return scores[best]
        raise ValueError(f"{self.name} has no prediction strategy {strategy!r}; it has {self.strategies}")

    def inference_layers(self, strategy: str, best: int) -> int:
        """Readouts to compute: all conv layers for GA, and the head as well for Sf."""
        return len(self.layers) + (1 if strategy == "sf" else 0)

    def inference_params(self, strategy: str, best: int) -> int:
        """Conv and BatchNorm parameters, BatchNorm running mean/var, and the head for Sf."""
        n = sum(p.numel() for p in self.layers.parameters())
        n += sum(layer.bn.running_mean.numel() + layer.bn.running_var.numel() for layer in self.layers)
        if strategy == "sf":
            n += sum(p.numel() for p in self.head.parameters())
        return n

    def extra_state_for_metrics(self) -> dict[str, Any]:
        return {"class_groups": self.class_groups, "goodness_site": self.cfg["goodness_site"],
                "sf_input": self.cfg["sf_input"], "sf_in_features": self.head.in_features,
                "sf_optimizer": self.cfg["sf_optimizer"], "sf_loss": self.cfg["sf_loss"],
                "feature_shape": list(self.feature_shape), "model_selection": "final epoch"}
