"""Evaluation: per-readout accuracy, prediction strategies and inference cost."""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from asge.method import Method


@torch.no_grad()
def readout_accuracy(method: Method, loader: Iterable, amp: AbstractContextManager) -> torch.Tensor:
    """[L] accuracy of every readout (layer or head) over `loader`."""
    return validation_stats(method, loader, amp)[0]


@torch.no_grad()
def validation_stats(method: Method, loader: Iterable,
                     amp: AbstractContextManager) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """[L] accuracy of every readout over `loader`, and the method's own [L] rates
    (`Method.eval_counts`, e.g. FF's positive/negative accuracy) in the same pass."""
    correct, n, extra = None, 0, {}
    for x, y in loader:
        with amp:
            scores = method.layer_scores(x)
            counts = method.eval_counts(x, y, scores)
        c = torch.stack([(s.argmax(1) == y).sum() for s in scores])
        correct = c if correct is None else correct + c
        for k, v in counts.items():
            extra[k] = v.double() + extra[k] if k in extra else v.double()
        n += y.numel()
    return (correct.double() / n).cpu(), {k: (v / n).cpu() for k, v in extra.items()}


@torch.no_grad()
def strategy_accuracy(method: Method, loader: Iterable, best: int, amp: AbstractContextManager) -> dict[str, Any]:
    """Test accuracy (top-1, and top-5 where N >= 100) of each strategy, and per readout."""
    n_cls = method.info.num_classes
    top1 = {s: 0 for s in method.strategies}
    top5 = {s: 0 for s in method.strategies}
    per_readout, n = None, 0
    for x, y in loader:
        with amp:
            scores = method.layer_scores(x)
        c = torch.stack([(s.argmax(1) == y).sum() for s in scores])
        per_readout = c if per_readout is None else per_readout + c
        for s in method.strategies:
            pred = method.predict(scores, s, best).float()
            top1[s] += (pred.argmax(1) == y).sum()
            if n_cls >= 100:
                top5[s] += (pred.topk(5, 1).indices == y[:, None]).any(1).sum()
        n += y.numel()
    out: dict[str, Any] = {"per_readout": (per_readout.double() / n).tolist()}
    for s in method.strategies:
        out[s] = {"acc": float(top1[s]) / n}
        if n_cls >= 100:
            out[s]["top5"] = float(top5[s]) / n
    return out


class _OpWorkingSet(TorchDispatchMode):
    """Largest bytes(inputs) + bytes(outputs) of any single op: a tensor-size account of the
    activation memory an inference pass needs at least, identical on every machine."""

    def __init__(self) -> None:
        super().__init__()
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        size = sum(t.numel() * t.element_size() for t in ins + outs if not isinstance(t, torch.nn.Parameter))
        self.peak = max(self.peak, size)
        return out


@torch.no_grad()
def inference_memory(method: Method, x: torch.Tensor, strategy: str, best: int, amp: AbstractContextManager) -> dict[str, Any]:
    """Peak memory of one inference batch for `strategy`: CUDA max allocated on a GPU,
    parameters + the largest single-op working set (tensor-size account) on the CPU."""
    upto = method.inference_layers(strategy, best)
    params = method.inference_params(strategy, best)
    param_bytes = params * 4
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        # resident data sets and the unused layers are already allocated: count only what
        # the pass adds, plus the parameters the strategy needs
        base = torch.cuda.memory_allocated(x.device)
        with amp:
            method.predict(method.layer_scores(x, upto=upto), strategy, best)
        torch.cuda.synchronize(x.device)
        peak, how = torch.cuda.max_memory_allocated(x.device) - base + param_bytes, "cuda_max_allocated"
    else:
        mode = _OpWorkingSet()
        with mode, amp:
            method.predict(method.layer_scores(x, upto=upto), strategy, best)
        peak, how = param_bytes + mode.peak, "tensor_account"
    return {"inference_params": params, "inference_layers": upto, "inference_memory_bytes": int(peak),
            "inference_memory_method": how, "inference_batch": int(x.shape[0])}
