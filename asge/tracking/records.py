"""What a run logs to MLflow, as pure functions of the run's config, history rows and metrics.

- params: every config key (lists and dicts as JSON, long values cut);
- tags: method, data set, seed, result digest, study, run folder, hardware and library versions;
- per-epoch metrics (step = epoch): per readout as `<column>.<readout>` (e.g. `val_acc.layer3`),
  epoch-wide ones plain (`epoch_time_s`, `images_per_s`, `lr`, `val_acc_best_readout`, ...).
  Column names are the history's own: a method's training accuracy is named by the method
  (`train_acc`, FF's `train_posneg_acc`), never renamed here;
- final metrics (step = epochs) from metrics.json, read through its schema (asge.runfolder);
- identity of a finished run: the result digest (`asge.config_hash`) and a digest of its
  metrics.json (`asge.metrics_digest`), shared by a live run and an import of its folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping

from asge.config import result_digest as config_digest
from asge.runfolder import COST_FIELDS, HISTORY_EPOCH_WIDE, METRICS, Metrics

REPO = Path(__file__).resolve().parent.parent
TAG = "asge."  # prefix of the suite's own tags
MAX_PARAM_CHARS = 6000


def number(v: Any) -> float | None:
    """v as a finite float, or None (blank CSV cells, NaN, text)."""
    if isinstance(v, bool):
        return float(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def epoch_metrics(rows: Iterable[Mapping[str, Any]]) -> dict[int, dict[str, float]]:
    """{epoch: {metric: value}} from history rows (one row per epoch and readout)."""
    out: dict[int, dict[str, float]] = {}
    by_epoch: dict[int, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_epoch.setdefault(int(float(r["epoch"])), []).append(r)
    for epoch, rs in by_epoch.items():
        m: dict[str, float] = {}
        for r in rs:
            for k, v in r.items():
                if k in ("epoch", "readout"):
                    continue
                f = number(v)
                if f is not None:
                    m[k if k in HISTORY_EPOCH_WIDE else f"{k}.{r['readout']}"] = f
        vals = [f for f in (number(r.get("val_acc")) for r in rs) if f is not None]
        if vals:
            m["val_acc_best_readout"] = max(vals)
            last = number(rs[-1].get("val_acc"))
            if last is not None:
                m["val_acc_last"] = last
        out[epoch] = m
    return out


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The engine's per-epoch summary, finite values only."""
    return {k: f for k, f in ((k, number(v)) for k, v in summary.items()) if f is not None}


def final_metrics(metrics: Metrics) -> dict[str, float]:
    """The flat final metrics of a metrics.json dict (schema: asge.runfolder.Metrics)."""
    out: dict[str, float] = {}

    def put(k: str, v: Any) -> None:
        f = number(v)
        if f is not None:
            out[k] = f

    put("test_acc", metrics.get("test_acc"))
    for s, d in (metrics.get("strategies") or {}).items():
        put(f"test_acc.{s}", d.get("acc"))
        put(f"test_top5.{s}", d.get("top5"))
        put(f"inference_params.{s}", d.get("inference_params"))
        put(f"inference_memory_bytes.{s}", d.get("inference_memory_bytes"))
        # inference_layers counts readouts (BP: its one head), not conv blocks; named for what
        # it is here (T2 counts blocks and heads)
        put(f"inference_readouts.{s}", d.get("inference_layers"))
    for s, acc in (metrics.get("val_acc_per_strategy") or {}).items():  # where a recipe is chosen
        put(f"val_acc_strategy.{s}", acc)
    for name, acc in zip(metrics.get("readouts") or [], metrics.get("test_acc_per_readout") or []):
        put(f"test_acc_readout.{name}", acc)
    for k in COST_FIELDS:
        put(k, metrics.get(k))
    return out


def final_tags(metrics: Metrics) -> dict[str, str]:
    """Tags known once the run finished: the chosen readout and strategy, the hardware."""
    tags = {TAG + "best_readout": str(metrics.get("best_readout")),
            TAG + "primary_strategy": str(metrics.get("primary_strategy"))}
    tags.update({f"{TAG}hw.{k}": str(v) for k, v in (metrics.get("hardware") or {}).items()})
    return tags


def param_items(cfg: Mapping[str, Any]) -> dict[str, str]:
    """Every config key as an MLflow param (lists and dicts as JSON, long values cut)."""
    out = {}
    for k, v in sorted(cfg.items()):
        s = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
        out[k] = s if len(s) <= MAX_PARAM_CHARS else s[: MAX_PARAM_CHARS - 3] + "..."
    return out


def result_digest(cfg: Mapping[str, Any]) -> str:
    """The run's result digest (asge.config, the one definition; '' for an unresolved config)."""
    try:
        return config_digest(cfg)
    except Exception:  # noqa: BLE001 - a config that failed to resolve still gets its FAILED run
        return ""


def metrics_digest(out_dir: Path) -> str:
    """A digest of the folder's metrics.json bytes ('' without one)."""
    path = Path(out_dir) / METRICS
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def run_tags(cfg: Mapping[str, Any], out_dir: Path, study: str, digest: str,
             env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The tags every run of the suite carries, known before training starts; `env`: the
    environment tags (default: this machine's, `environment_tags()`)."""
    return {
        TAG + "method": str(cfg.get("method")), TAG + "dataset": str(cfg.get("dataset")),
        TAG + "seed": str(cfg.get("seed")), TAG + "config_hash": digest, TAG + "study": study,
        TAG + "run_dir": str(Path(out_dir).resolve()), "mlflow.source.name": "asge.train",
        "mlflow.source.type": "LOCAL", **(environment_tags() if env is None else env),
    }


def error_text(error: BaseException) -> str:
    """The error as a tag value (MLflow's limit is 5000 characters)."""
    return f"{type(error).__name__}: {error}"[:5000]


def environment_tags() -> dict[str, str]:
    """Hardware and versions known before the run starts (no CUDA initialisation)."""
    import mlflow
    import torch

    tags = {
        TAG + "host": socket.gethostname(),
        TAG + "cpu": platform.processor() or platform.machine(),
        TAG + "cpu_count": str(os.cpu_count()),
        TAG + "python": platform.python_version(),
        TAG + "torch": torch.__version__,
        TAG + "mlflow": mlflow.__version__,
        TAG + "cuda_available": str(torch.cuda.is_available()).lower(),
    }
    with contextlib.suppress(Exception):
        import torchvision

        tags[TAG + "torchvision"] = torchvision.__version__
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5)
        if commit.returncode == 0:
            tags["mlflow.source.git.commit"] = commit.stdout.strip()
    return tags


def recorded_environment_tags(hardware: Mapping[str, Any]) -> dict[str, str]:
    """The environment tags that a finished run's metrics.json `hardware` still tells (an import
    on another machine must not claim its own host, versions or commit for the run)."""
    tags = {TAG + k: str(hardware[k]) for k in ("cpu", "python", "torch", "torchvision") if hardware.get(k)}
    if hardware.get("gpu"):
        tags[TAG + "cuda_available"] = "true"
    return tags
