"""The interface every learning method implements, so that one engine trains them all.

A method owns its model and its losses; the engine owns data, optimiser, schedule,
checkpoints, metrics and logging. Per training step the engine calls
`method.train_step(x, y, epoch)`, which must run forward, call `backward()` itself
(so layer-local methods can free each layer's graph early) and return a StepStats;
the engine then steps the optimiser. For evaluation the method returns per-readout
scores ([B, N] per layer or head) and combines them into predictions per strategy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from asge.config import Key


@dataclass
class StepStats:
    """What one training step reports; all tensors stay on the device (no sync per step).

    layer_loss:    [L] loss of each readout (layer or head), detached.
    layer_correct: [L] number of correctly classified training samples per readout.
    extra:         named [L] counts summed over the epoch and divided by the sample
                   count (e.g. FF's positive/negative accuracies).
    """

    layer_loss: torch.Tensor
    layer_correct: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class Method(nn.Module):
    """Base class of registered methods (see asge.registry.register_method)."""

    name: str = "?"
    #: how tables and figures name the method (register_method defaults it to `name`)
    display_name: str = "?"
    #: method-specific configuration keys (name -> Key), validated like the common ones
    keys: dict[str, Key] = {}
    #: True when no gradient crosses layers (tested for every such method)
    layer_local: bool = False
    #: prediction strategies this method supports; the first is its headline number
    strategies: tuple[str, ...] = ("last",)
    #: how tables and figures name each strategy (a missing one: the key, capitalised)
    strategy_names: dict[str, str] = {"last": "Last", "best": "Best"}
    #: the strategies its paper reports, primary first: the budget figure draws each
    headline_strategies: tuple[str, ...] = ()
    #: history column of the per-readout training accuracy (FF: its positive/negative
    #: separation rate, chance 50 %, is not a class accuracy and is named apart)
    train_acc_name: str = "train_acc"

    def __init__(self, cfg: Mapping[str, Any], info: Any) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        self.info = info

    # --- facts the tables and figures read (the workflow knows no method by name) -----
    @classmethod
    def strategy_name(cls, strategy: str) -> str:
        return cls.strategy_names.get(strategy, strategy.capitalize())

    @classmethod
    def shown_strategies(cls) -> tuple[str, ...]:
        return cls.headline_strategies or cls.strategies[:1]

    @classmethod
    def inference_structure(cls, strategy: str, readouts_used: int, cfg: Mapping[str, Any]) -> tuple[int | None, int | None]:
        """(conv blocks, heads) that `strategy` runs at inference, given how many readouts it uses
        (metrics.json's `inference_layers`); None where the method cannot say (the default)."""
        return readouts_used, None

    # --- configuration -------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Cross-key checks that need more than one key (raise ConfigError)."""

    # --- training ------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        """Parameter groups for the optimiser (fixed buffers are never included)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> StepStats:
        raise NotImplementedError

    def after_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> None:
        """Runs after the optimiser step on the same batch (default: nothing)."""

    @property
    def readout_names(self) -> list[str]:
        """Names of the readouts whose scores `layer_scores` returns, e.g. layer1..layer8."""
        raise NotImplementedError

    # --- evaluation ----------------------------------------------------------------
    def eval_counts(self, x: torch.Tensor, y: torch.Tensor,
                    scores: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Method-specific [L] counts on a validation batch (`scores`: its `layer_scores`, already
        computed), logged per epoch as `val_<name>` rates (divided by the number of images)."""
        return {}

    def layer_scores(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Per-readout class scores [B, N] (argmax = that readout's prediction); with `upto`,
        only the first `upto` readouts are computed (inference of a truncated network)."""
        raise NotImplementedError

    def predict(self, scores: list[torch.Tensor], strategy: str, best: int) -> torch.Tensor:
        """Class scores [B, N] of `strategy` from the per-readout scores; `best` is the
        validation-selected readout index (used by the 'best' strategy)."""
        if strategy == "last":
            return scores[-1]
        if strategy == "best":
            return scores[best]
        raise ValueError(f"{self.name} has no prediction strategy {strategy!r}; it has {self.strategies}")

    def inference_layers(self, strategy: str, best: int) -> int:
        """How many blocks must run at inference for `strategy` (the rest can be dropped)."""
        return best + 1 if strategy == "best" else len(self.readout_names)

    def inference_params(self, strategy: str, best: int) -> int:
        """Parameters (and fixed projection values) needed at inference for `strategy`."""
        return sum(p.numel() for p in self.parameters()) + sum(b.numel() for b in self.buffers())

    def extra_state_for_metrics(self) -> dict[str, Any]:
        """Method-specific numbers for metrics.json (e.g. goodness dimensions)."""
        return {}

    def diagnostics(self, x: torch.Tensor) -> dict[str, Any]:
        """Method-specific data from one test batch x after training, saved as diagnostics.pt."""
        return {}
