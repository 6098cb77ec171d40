"""The shared training engine: one loop for every registered method.

It owns data, optimiser, schedule, mixed precision, checkpoints (atomic, every epoch,
resumed automatically), the per-epoch history and the final metrics. Methods own their
losses (see asge.method). Callbacks (e.g. MLflow tracking) observe but never decide.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

from asge import distributed
from asge.evaluate import inference_memory, strategy_accuracy, validation_stats
from asge.method import Method
from asge.methods import create_method
from asge.progress import EpochProgress
from asge.runfolder import CHECKPOINT, Metrics, RunFolder, RunFolderMismatch, Start, read_metrics
from asge.runtime import hardware_info, rng_state, select_device, set_rng_state, setup_runtime, switch_on

if TYPE_CHECKING:
    from timm.scheduler import CosineLRScheduler

log = logging.getLogger("asge")

class NonFiniteLoss(RuntimeError):
    """A training loss became NaN or infinite."""


class Callback:
    """Observer of a run; every hook is optional and must not raise into training."""

    def on_start(self, cfg: Mapping[str, Any], out_dir: Path, start_epoch: int) -> None: ...
    def on_epoch(self, epoch: int, rows: list[dict[str, Any]], summary: dict[str, float]) -> None: ...
    def on_success(self, metrics: dict[str, Any], out_dir: Path) -> None: ...
    def on_failure(self, error: BaseException, out_dir: Path) -> None: ...


def build_optimizer(groups: list[dict], cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The configured optimiser over the method's parameter groups."""
    lr, wd = cfg["lr"], cfg["weight_decay"]
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd)
    return torch.optim.SGD(groups, lr=lr, weight_decay=wd, momentum=cfg["momentum"], nesterov=True)


def build_scheduler(opt: torch.optim.Optimizer, cfg: Mapping[str, Any], steps_per_epoch: int) -> CosineLRScheduler | None:
    """Cosine with linear warm-up, stepped per iteration (timm); None for a constant rate."""
    if cfg["schedule"] == "constant":
        return None
    # imported here: timm imports torchvision.models (seconds), which the bench never needs
    from timm.scheduler import CosineLRScheduler

    total = max(1, cfg["epochs"] * steps_per_epoch)
    warm = min(int(cfg["warmup_epochs"] * steps_per_epoch), total - 1)
    return CosineLRScheduler(opt, t_initial=total - warm if warm else total, lr_min=cfg["min_lr"], warmup_t=warm,
                             warmup_lr_init=cfg["lr"] * 1e-3 if warm else cfg["lr"], warmup_prefix=True,
                             t_in_epochs=False)


def autocast_for(device: torch.device, cfg: Mapping[str, Any]) -> contextlib.AbstractContextManager:
    """bf16 autocast on the run's device when `amp` is on (auto: CUDA only), else a no-op."""
    if switch_on(cfg, "amp", device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Trainer:
    """Trains `cfg['method']` on `cfg['dataset']`, writing everything into `out_dir` (a path, or the
    RunFolder that the training command locked), from `start`, the folder's start decision
    (RunFolder.start; made here when not given: a refusal raises RunFolderMismatch)."""

    def __init__(self, cfg: Mapping[str, Any], out_dir: str | Path | RunFolder, callbacks: Sequence[Callback] = (),
                 start: Start | None = None) -> None:
        self.cfg = dict(cfg)
        self.folder = out_dir if isinstance(out_dir, RunFolder) else RunFolder(out_dir)
        self.out = self.folder.out
        self.callbacks = list(callbacks)
        self.start = start or self.folder.start(self.cfg)
        if self.start.kind == "refused":
            raise RunFolderMismatch(self.start.why)
        self.hash = self.start.digest

    # --- setup -----------------------------------------------------------------------
    def _setup(self) -> None:
        from asge.data import build_data  # the data layer imports torchvision; keep import cost here

        cfg = self.cfg
        self.rank, self.world, local_rank = distributed.world()
        self.device = select_device(cfg, local_rank)
        distributed.init(self.device)
        setup_runtime(cfg, self.device)
        self.data = build_data(cfg, self.device, self.rank, self.world)
        self.method: Method = create_method(cfg["method"], cfg, self.data.info).to(self.device)
        if switch_on(cfg, "channels_last", self.device):
            self.method = self.method.to(memory_format=torch.channels_last)
        self.opt = build_optimizer(self.method.param_groups(), cfg)
        self.sched = build_scheduler(self.opt, cfg, len(self.data.train))
        self.amp = autocast_for(self.device, cfg)
        self.step_fn = torch.compile(self.method.train_step) if cfg["compile"] else self.method.train_step
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        state, self.start.checkpoint = self.start.checkpoint, None  # not kept beside the live model
        if state is not None:
            self.method.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            # The schedule is not restored from state["scheduler"]: the rate is a function of the
            # global step and the config, and `epochs` may have grown since (it is not part of the
            # config hash); restoring would keep the old length and decay to min_lr too early.
            set_rng_state(state["rng"])
            self.history = state["history"]
            self.start_epoch = state["epoch"] + 1
            log.info("resuming %s from %s after epoch %d", self.out, self.folder.path(CHECKPOINT), state["epoch"] + 1)

    @property
    def main(self) -> bool:
        """Only rank 0 writes files and talks to tracking."""
        return getattr(self, "rank", 0) == 0

    def _save(self, epoch: int) -> None:
        if not self.main:
            return
        self.folder.write_checkpoint({
            "model": self.method.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict() if self.sched is not None else {},
            "epoch": epoch,
            "rng": rng_state(),
            "history": self.history,
            "config": self.cfg,
            "config_hash": self.hash,
        })

    # --- one epoch -------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        method, loader, cfg = self.method, self.data.train, self.cfg
        method.train()
        loader.set_epoch(epoch)
        sums: dict[str, torch.Tensor] = {}
        n, t0 = 0, time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        step0 = epoch * len(loader)
        # host-side counts only: the bar/log line adds no GPU synchronisation per step
        progress = EpochProgress(epoch, cfg["epochs"], len(loader), enabled=self.main)
        compile_s, n_compiled = 0.0, 0
        for i, (x, y) in enumerate(loader):
            graphs = _compiled_graphs() if cfg["compile"] else 0
            ts = time.perf_counter()
            self.opt.zero_grad(set_to_none=True)
            with self.amp:
                stats = self.step_fn(x, y, epoch)
            distributed.average_gradients(self.method.parameters(), self.world)
            self.opt.step()
            if self.sched is not None:
                self.sched.step_update(step0 + i + 1)
            with self.amp:
                method.after_step(x, y, epoch)
            b = y.numel()
            parts = {"loss": stats.layer_loss.float() * b, "correct": stats.layer_correct.float(), **stats.extra}
            for k, v in parts.items():
                sums[k] = v.detach().float() + sums[k] if k in sums else v.detach().float()
            n += b
            if cfg["compile"] and _compiled_graphs() != graphs:
                # this step compiled (first batch, a new batch shape, a new guard on `epoch`): its
                # time is compile time, kept out of the epoch's time; a sync only on such steps
                _sync(self.device)
                compile_s, n_compiled = compile_s + time.perf_counter() - ts, n_compiled + b
            progress.update(i + 1, n * self.world)
            if (i + 1) % cfg["log_every"] == 0:
                self._check_finite(sums["loss"], epoch, i, across_ranks=True)
        progress.close()
        n_local = n
        for v in sums.values():
            distributed.all_reduce_sum(v)
        n = int(distributed.all_reduce_sum(torch.tensor(float(n), device=self.device)).item())
        self._check_finite(sums["loss"], epoch, len(loader) - 1)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        dt = time.perf_counter() - t0
        compile_time = None
        if cfg["compile"]:
            dt, compile_time = _split_compile_time(dt, compile_s, n_local, n_compiled)
        peak = float("nan")
        if self.device.type == "cuda":  # less the data sets resident on the GPU: they are not the method's cost
            peak = torch.cuda.max_memory_allocated(self.device) - self.data.resident_bytes()
        return {"time": dt, "n": n, "peak": peak, "compile_time": compile_time,
                **{k: (v / n).tolist() for k, v in sums.items()}}

    def _check_finite(self, loss_sum: torch.Tensor, epoch: int, step: int, across_ranks: bool = False) -> None:
        finite = torch.isfinite(loss_sum)
        if across_ranks and self.world > 1:
            # every rank must stop together: one rank raising alone leaves the others waiting
            # in the next gradient all-reduce until the NCCL timeout
            finite = distributed.all_reduce_sum((~finite).float()) == 0
        if not finite.all():
            bad = [name for name, ok in zip(self.method.readout_names, finite.tolist()) if not ok]
            kept = (f"the checkpoint of epoch {epoch} is kept" if (self.out / CHECKPOINT).exists()
                    else "no checkpoint exists yet")
            raise NonFiniteLoss(
                f"non-finite training loss in {', '.join(bad)} at epoch {epoch + 1}, step {step + 1}; the run is "
                f"stopped and no metrics.json is written ({kept}). Lower lr "
                f"(now {self.cfg['lr']}) or check the inputs"
            )

    # --- main loop -------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train (resuming if a checkpoint exists), evaluate, and write metrics.json last; a run
        finished with these settings is not trained again (its metrics are returned)."""
        if self.start.kind == "done":
            log.info("%s is finished with these settings", self.out)
            return dict(read_metrics(self.out))
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            self._setup()
            if not self.main:
                self.callbacks = []
            else:
                self.folder.write_config(self.cfg)
                if self.start_epoch:  # a kill between checkpoint and history.csv: the checkpoint's history wins
                    self.folder.write_history(self.history)
            for cb in self.callbacks:
                _safe(cb.on_start, self.cfg, self.out, self.start_epoch)
            for epoch in range(self.start_epoch, self.cfg["epochs"]):
                self._epoch(epoch)
            metrics = self._finish()
            distributed.shutdown(barrier=True)
        except BaseException as e:
            for cb in self.callbacks:
                _safe(cb.on_failure, e, self.out)
            distributed.shutdown(barrier=False)  # a failed rank must not wait for the others
            raise
        for cb in self.callbacks:
            _safe(cb.on_success, metrics, self.out)
        return metrics

    def _epoch(self, epoch: int) -> None:
        tr = self._train_epoch(epoch)
        self.method.eval()
        val_acc, val_extra = validation_stats(self.method, self.data.val, self.amp)
        val = val_acc.tolist()
        lr = self.opt.param_groups[0]["lr"]
        ips = tr["n"] / tr["time"]
        rows = []
        for j, name in enumerate(self.method.readout_names):
            row = {"epoch": epoch + 1, "readout": name, "train_loss": tr["loss"][j],
                   self.method.train_acc_name: tr["correct"][j], "val_acc": val[j]}
            row.update({k: tr[k][j] for k in tr if k not in ("time", "n", "peak", "loss", "correct", "compile_time")})
            row.update({f"val_{k}": v[j].item() for k, v in val_extra.items()})
            row.update({"epoch_time_s": tr["time"], "images_per_s": ips, "lr": lr, "peak_memory_bytes": tr["peak"]})
            if tr["compile_time"] is not None:  # compile runs only: time spent compiling, not in epoch_time_s
                row["compile_time_s"] = tr["compile_time"]
            rows.append(row)
        self.history += rows
        self._save(epoch)
        if self.main:
            self.folder.write_history(self.history)
        summary = {"epoch_time_s": tr["time"], "images_per_s": ips, "lr": lr,
                   "val_acc_best_readout": max(val), "val_acc_last": val[-1]}
        if tr["compile_time"] is not None:
            summary["compile_time_s"] = tr["compile_time"]
        for cb in self.callbacks:
            _safe(cb.on_epoch, epoch + 1, rows, summary)
        accs = " ".join(f"{v * 100:.1f}" for v in val)
        log.info("epoch %d/%d  %.1fs  %.0f img/s  loss %.4f  val acc per readout [%s]", epoch + 1, self.cfg["epochs"],
                 tr["time"], ips, tr["loss"][-1], accs)

    def _finish(self) -> Metrics:
        method, cfg = self.method, self.cfg
        method.eval()
        last = [r for r in self.history if r["epoch"] == cfg["epochs"]]
        val = [r["val_acc"] for r in last]
        best = max(range(len(val)), key=lambda j: (val[j], -j))  # ties: the shallower, cheaper readout
        # a step of its own: on a CPU it takes 10-60 s after the last epoch's line
        started = time.perf_counter()
        log.info("final evaluation: %d strategies (%s) on the test and validation splits ...",
                 len(method.strategies), ", ".join(method.strategies))
        test = strategy_accuracy(method, self.data.test, best, self.amp)
        # every strategy on validation too: recipe choices are made on these, never on test
        val_strategies = strategy_accuracy(method, self.data.val, best, self.amp)
        log.info("final evaluation done in %.1fs", time.perf_counter() - started)
        x, _ = next(iter(self.data.test))
        strategies = {}
        for s in method.strategies:
            strategies[s] = {**test[s], **inference_memory(method, x, s, best, self.amp)}
        epochs = {r["epoch"]: r["epoch_time_s"] for r in self.history}
        ips = {r["epoch"]: r["images_per_s"] for r in self.history}
        metrics: Metrics = {
            "method": cfg["method"], "dataset": cfg["dataset"], "seed": cfg["seed"], "config_hash": self.hash,
            "epochs": cfg["epochs"], "primary_strategy": method.strategies[0],
            "test_acc": strategies[method.strategies[0]]["acc"],
            "strategies": strategies,
            "best_readout": method.readout_names[best],
            "readouts": method.readout_names,
            "val_acc_per_readout": val,
            "val_acc_per_strategy": {s: val_strategies[s]["acc"] for s in method.strategies},
            "test_acc_per_readout": test["per_readout"],
            "params_total": sum(p.numel() for p in method.parameters()),
            "params_trainable": sum(p.numel() for p in method.parameters() if p.requires_grad),
            "fixed_buffer_values": sum(b.numel() for b in method.buffers()),
            "epoch_time_s_mean": sum(epochs.values()) / len(epochs),
            "train_time_s": sum(epochs.values()),
            "train_images_per_s": sum(ips.values()) / len(ips),
            "peak_train_memory_bytes": max(r["peak_memory_bytes"] for r in self.history) if self.device.type == "cuda" else None,
            "hardware": hardware_info(self.device),
            "numerics": {"amp_bf16": switch_on(cfg, "amp", self.device),
                         "channels_last": switch_on(cfg, "channels_last", self.device)},
            "method_extra": method.extra_state_for_metrics(),
        }
        metrics["world_size"] = self.world
        if cfg["compile"]:  # torch.compile's own time, kept out of epoch_time_s and train_images_per_s
            per_epoch = {r["epoch"]: r.get("compile_time_s", 0.0) for r in self.history}
            metrics["compile_time_s"] = sum(per_epoch.values())
        # images per split, for the dataset record in tracking (train: all ranks' shards)
        metrics["data_splits"] = {"train": self.data.train.num_samples * self.world,
                                  "val": self.data.val.num_samples, "test": self.data.test.num_samples}
        if not self.main:
            return metrics
        self.folder.write_diagnostics(method.diagnostics(x))
        self.folder.write_metrics(metrics)  # last: its presence means the run finished
        log.info("test acc %s", {s: round(v["acc"] * 100, 2) for s, v in strategies.items()})
        return metrics


def _compiled_graphs() -> int:
    """How many graphs torch.compile has compiled in this process so far (a host-side count)."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _split_compile_time(dt: float, compile_s: float, n: int, n_compiled: int) -> tuple[float, float]:
    """(epoch time, compile time) from an epoch's wall time `dt` and the `compile_s` seconds of
    its steps that compiled: the epoch time is the other steps' time scaled to all `n` images
    (the steady rate), the compile time what the compiling steps took beyond that rate. When
    every step compiled there is no steady rate: (dt, nan)."""
    steady_n, steady_t = n - n_compiled, dt - compile_s
    if n_compiled == 0:
        return dt, 0.0
    if steady_n <= 0 or steady_t <= 0:
        return dt, float("nan")
    epoch_t = steady_t * n / steady_n
    return epoch_t, max(0.0, dt - epoch_t)


def _safe(fn, *args) -> None:
    """Callbacks observe; a failing one is reported and never stops or loses the run."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - tracking must never kill training
        print(f"warning: callback {fn.__qualname__} failed: {type(e).__name__}: {e}", file=sys.stderr)
