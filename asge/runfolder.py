"""The run folder and everything written into it, in one place.

A run folder (e.g. results/smoke/runs/main/asge-mnist-s0/) holds:

    request.yaml     the resolved config the workflow asks for (written by the workflow)
    config.yaml      the config the run trained with (request + runtime settings)
    history.csv      one row per epoch and readout
    checkpoint.pt    model, optimiser, epoch, RNG states (every epoch; never committed)
    diagnostics.pt   what the method chooses to keep (Method.diagnostics), e.g. ASGE's goodness
    metrics.json     the final numbers (schema: `Metrics`), written last: it means "finished"
    .lock            held (flock) by the process that trains into the folder

Policy (one digest, `asge.config.result_digest`, which ignores `epochs` and the runtime keys):
a finished folder with the same digest is done, or resumes from its checkpoint when only `epochs`
grew; an unfinished one resumes from its checkpoint. A finished run or a checkpoint with another
digest is refused, unless `force` (the workflow always forces: a changed request retrains), which
deletes them and starts from scratch. A corrupt checkpoint is never deleted: it stops the run.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TypedDict

from asge.atomic import save_torch, write_json, write_text
from asge.config import changes_result, result_digest
from asge.ranks import is_rank_zero

log = logging.getLogger("asge")

REQUEST = "request.yaml"
CONFIG = "config.yaml"
HISTORY = "history.csv"
CHECKPOINT = "checkpoint.pt"
DIAGNOSTICS = "diagnostics.pt"
METRICS = "metrics.json"
LOCK = ".lock"


class StrategyMetrics(TypedDict, total=False):
    """Test numbers of one prediction strategy (asge.evaluate)."""

    acc: float
    top5: float
    inference_layers: int
    inference_params: int
    inference_memory_bytes: int
    inference_memory_method: str


class Metrics(TypedDict, total=False):
    """metrics.json: the one definition that the engine writes and tracking and aggregate read."""

    method: str
    dataset: str
    seed: int
    config_hash: str            # asge.config.result_digest of the config
    epochs: int
    primary_strategy: str
    test_acc: float             # the primary strategy's test accuracy
    strategies: dict[str, StrategyMetrics]
    best_readout: str           # picked on validation accuracy, never on test
    readouts: list[str]
    val_acc_per_readout: list[float]
    test_acc_per_readout: list[float]
    params_total: int
    params_trainable: int
    fixed_buffer_values: int
    epoch_time_s_mean: float
    train_time_s: float
    train_images_per_s: float
    peak_train_memory_bytes: int | None
    compile_time_s: float       # compile runs only; kept out of the epoch times
    hardware: dict[str, str]    # asge.runtime.hardware_info
    method_extra: dict[str, Any]
    world_size: int
    data_splits: dict[str, int]


#: the numeric cost columns that aggregate copies into runs.csv and tracking logs as metrics
COST_FIELDS = ("params_total", "params_trainable", "fixed_buffer_values", "epoch_time_s_mean", "train_time_s",
               "train_images_per_s", "peak_train_memory_bytes", "compile_time_s")


def hardware_label(hw: Mapping[str, Any]) -> str:
    """The hardware a run was measured on, in words: the GPU's name, or the CPU and threads."""
    if hw.get("gpu"):
        return str(hw["gpu"])
    return f"CPU {hw.get('cpu', '?')}, threads={hw.get('threads', '?')}"


class RunFileCorrupt(ValueError):
    """A run-folder file that cannot be read (truncated, hand-edited): names the file and the fix."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(
            f"{path} cannot be read ({why}). Restore it (git checkout -- {path}, if it is committed), or delete "
            f"it and rerun the training command with --force: with the last epoch's checkpoint.pt in the folder "
            f"the run is only evaluated again, without it the run retrains")


def read_metrics(out: str | Path) -> Metrics:
    path = Path(out) / METRICS
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFileCorrupt(path, f"not valid JSON: {e}") from None
    if not isinstance(metrics, dict):
        raise RunFileCorrupt(path, f"a JSON {type(metrics).__name__}, not an object")
    return metrics


def read_config(out: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(out) / CONFIG
    if not path.exists():
        return {}
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RunFileCorrupt(path, f"not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(cfg, dict):
        raise RunFileCorrupt(path, f"a YAML {type(cfg).__name__}, not a mapping of keys")
    return cfg


class RunFolderBusy(RuntimeError):
    """Another process is training into the same run folder."""


class RunFolderMismatch(RuntimeError):
    """The folder holds a finished run, or a checkpoint, of other settings."""


class RunFolder:
    """Owner of one run folder: lock, resume policy and every file written into it."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)

    def path(self, name: str) -> Path:
        return self.out / name

    @property
    def finished(self) -> bool:
        return self.path(METRICS).exists()

    # --- lock ------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, wait: bool = False) -> Iterator[None]:
        """An exclusive lock for the whole run (released when the process dies). Held by another
        process: RunFolderBusy, or with `wait` block until it is free (the workflow's jobs: a job
        started beside an orphaned one, e.g. after `snakemake --unlock`, waits for it instead of
        failing, which would make Snakemake delete the folder's outputs). Under torchrun only
        rank 0 takes it: the ranks of one run share the folder by design."""
        if not is_rank_zero():
            yield
            return
        created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            yield from self._locked(wait)
        finally:
            # a run that failed in setup (missing data, bad device) leaves no folder holding only .lock
            if created and [p.name for p in self.out.iterdir()] == [LOCK]:
                self.path(LOCK).unlink(missing_ok=True)
                self.out.rmdir()

    def _locked(self, wait: bool) -> Iterator[None]:
        import fcntl

        with open(self.path(LOCK), "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise RunFolderBusy(f"another process is training into {self.out} (it holds "
                                        f"{self.path(LOCK)}); wait for it to finish or use another --out folder") from None
                log.warning("another process is training into %s (it holds %s): waiting for it to finish; "
                            "`fuser %s` names it", self.out, self.path(LOCK), self.path(LOCK))
                fcntl.flock(f, fcntl.LOCK_EX)
            yield

    # --- policy ----------------------------------------------------------------------
    def verdict(self, cfg: Mapping[str, Any]) -> tuple[str, str]:
        """For a finished folder: ("done", ""), ("extend", "") when only `epochs` grew (resume from
        the checkpoint), or ("differs", what differs)."""
        metrics = read_metrics(self.out)
        if metrics.get("config_hash") == result_digest(cfg):
            if cfg["epochs"] == metrics.get("epochs"):
                return "done", ""
            if cfg["epochs"] > metrics.get("epochs", 0) and self.path(CHECKPOINT).exists():
                return "extend", ""
            return "differs", f"epochs {metrics.get('epochs')} -> {cfg['epochs']}"
        keys = differing_keys(read_config(self.out), cfg)
        return "differs", "keys: " + (", ".join(keys) if keys else "unknown (no config.yaml)")

    def prepare(self, cfg: Mapping[str, Any], force: bool = False) -> bool:
        """Apply the policy before training. False: the run is finished with these settings
        (nothing to do). Raises RunFolderMismatch for a finished run, or a checkpoint, with other
        settings, unless `force` (then they are deleted and the run starts from scratch)."""
        if self.finished:
            verdict, why = self.verdict(cfg)
            if verdict == "done":
                return False
            if verdict == "differs" and not force:
                raise RunFolderMismatch(
                    f"{self.out} holds a finished run with other settings ({why}); train into a new --out folder, "
                    f"or pass --force to retrain this one from scratch (deletes its checkpoint and metrics)")
            if verdict == "differs":
                log.info("--force: retraining %s from scratch", self.out)
                self.path(METRICS).unlink(missing_ok=True)
                self.path(CHECKPOINT).unlink(missing_ok=True)
        stale = self.stale_checkpoint(cfg)
        if stale and not force:
            raise RunFolderMismatch(
                f"{self.path(CHECKPOINT)} belongs to an unfinished run with other settings ({stale}); pass --force "
                f"to discard it and start from scratch, or train into a new --out folder")
        if stale:
            log.info("--force: removing the stale checkpoint %s (%s)", self.path(CHECKPOINT), stale)
            self.path(CHECKPOINT).unlink()
        return True

    def stale_checkpoint(self, cfg: Mapping[str, Any]) -> str:
        """What differs between `cfg` and the settings of a readable checkpoint written for other
        settings; '' when there is none, it matches, or it is unreadable (then load_checkpoint
        reports it: nothing is deleted on a guess)."""
        import torch

        ckpt = self.path(CHECKPOINT)
        if not ckpt.exists():
            return ""
        try:
            # mmap: only the digest and config are read here; the engine loads the weights once
            state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
            old_digest, old = state["config_hash"], dict(state.get("config") or {})
        except Exception:  # noqa: BLE001 - reported with a clear message when it is loaded
            return ""
        if old_digest == result_digest(cfg):
            return ""
        keys = differing_keys(old, cfg)
        return "keys: " + (", ".join(keys) if keys else f"digest {old_digest}")

    # --- files -----------------------------------------------------------------------
    def write_config(self, cfg: Mapping[str, Any]) -> None:
        import yaml

        write_text(self.path(CONFIG), yaml.safe_dump(dict(cfg), sort_keys=True))

    def write_history(self, rows: Sequence[Mapping[str, Any]]) -> None:
        write_text(self.path(HISTORY), history_csv(rows))

    def write_diagnostics(self, diagnostics: Mapping[str, Any]) -> None:
        save_torch(self.path(DIAGNOSTICS), dict(diagnostics))

    def write_metrics(self, metrics: Metrics) -> None:
        """Last: its presence means the run finished."""
        write_json(self.path(METRICS), metrics)


def differing_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The keys of two configs that make their results differ (asge.config.changes_result)."""
    return sorted(k for k in set(old) | set(new) if changes_result(k) and old.get(k) != new.get(k))


def history_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The history rows as CSV; columns in order of first appearance."""
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
