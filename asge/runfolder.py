"""The run folder and everything written into it, in one place.

A run folder (e.g. results/smoke/runs/main/asge-mnist-s0/) holds:

    request.yaml     the resolved config the workflow asks for (written by the workflow)
    config.yaml      the config the run trained with (request + runtime settings)
    history.csv      one row per epoch and readout (columns: HISTORY_COLUMNS)
    checkpoint.pt    model, optimiser, epoch, RNG states (every epoch; never committed)
    diagnostics.pt   what the method chooses to keep (Method.diagnostics), e.g. ASGE's goodness
    metrics.json     the final numbers (schema: `Metrics`), written last: it means "finished"
    .lock            held (flock) by the process that trains into the folder

The start decision (`RunFolder.start`, one call; one digest, `asge.config.result_digest`, which
ignores `epochs` and the runtime keys): a finished folder with the same digest is done, or resumes
from its checkpoint when only `epochs` grew; an unfinished one resumes from its checkpoint. A
finished run or a checkpoint with another digest is refused, unless `force` (the workflow always
forces: a changed request retrains), which deletes them and starts from scratch. A corrupt
checkpoint is never deleted: it stops the run.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, Sequence, TypedDict

from asge.atomic import save_torch, write_json, write_text
from asge.config import changes_result, result_digest
from asge.ranks import is_rank_zero

if TYPE_CHECKING:
    import pandas as pd

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


#: history.csv, one row per epoch and readout. Every run has these columns: the epoch (1-based),
#: the readout's name (Method.readout_names), its mean training loss and validation accuracy, and
#: the epoch's cost, the same on every row of an epoch (HISTORY_EPOCH_WIDE). Between loss and cost
#: come the method's own: its training accuracy (Method.train_acc_name), its per-readout extras
#: and their validation values (`val_<extra>`); `compile_time_s` in torch.compile runs only.
HISTORY_COLUMNS = ("epoch", "readout", "train_loss", "val_acc", "epoch_time_s", "images_per_s", "lr",
                   "peak_memory_bytes")
HISTORY_EPOCH_WIDE = ("epoch_time_s", "images_per_s", "lr", "peak_memory_bytes", "compile_time_s")

#: the numeric cost columns that aggregate copies into runs.csv and tracking logs as metrics
COST_FIELDS = ("params_total", "params_trainable", "fixed_buffer_values", "epoch_time_s_mean", "train_time_s",
               "train_images_per_s", "peak_train_memory_bytes", "compile_time_s")


def hardware_label(hw: Mapping[str, Any]) -> str:
    """The hardware a run was measured on, in words: the GPU's name, or the CPU and threads."""
    if hw.get("gpu"):
        return str(hw["gpu"])
    return f"CPU {hw.get('cpu', '?')}, threads={hw.get('threads', '?')}"


def run_name(method: str, dataset: str, seed: int, variant: str | None = None) -> str:
    """A workflow run folder's (and MLflow run's) name: asge-cifar10-s0, asge-cifar10-pool_avg-s0."""
    return "-".join([method, dataset, *([variant] if variant else []), f"s{seed}"])


def run_labels(out: str | Path, metrics: Mapping[str, Any]) -> tuple[str, str]:
    """(study, variant) of a run folder, as the folder records them: its place
    results/<preset>/runs/<study>/ and its name (run_name); variant '' for a name outside that
    scheme and in the main study."""
    out = Path(out)
    head, tail = f"{metrics['method']}-{metrics['dataset']}-", f"-s{metrics['seed']}"
    inner = out.name[len(head):-len(tail)] if out.name.startswith(head) and out.name.endswith(tail) else ""
    return out.parent.name, inner


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


def read_history(out: str | Path) -> pd.DataFrame:
    """history.csv as a frame; with no file yet (no epoch finished) an empty frame with the
    schema's columns. RunFileCorrupt, naming the file, when it cannot be read or lacks a column."""
    import pandas as pd

    path = Path(out) / HISTORY
    if not path.is_file():
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    try:
        hist = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise RunFileCorrupt(path, f"not a CSV table: {' '.join(str(e).split())}") from None
    missing = [c for c in HISTORY_COLUMNS if c not in hist.columns]
    if missing:
        raise RunFileCorrupt(path, f"it lacks the columns {missing} of asge.runfolder.HISTORY_COLUMNS")
    return hist


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


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt or not one of this suite's."""


@dataclass
class Start:
    """RunFolder.start's answer: `kind` is "fresh", "resume" (from `checkpoint`), "done" (finished
    with these settings) or "refused" (`why` says what differs and the way out)."""

    kind: Literal["fresh", "resume", "done", "refused"]
    digest: str  # asge.config.result_digest of the config, computed once
    checkpoint: dict[str, Any] | None = None
    why: str = ""


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

    # --- the start decision ----------------------------------------------------------
    def start(self, cfg: Mapping[str, Any], force: bool = False) -> Start:
        """Train, resume, skip or refuse: the one decision for `cfg` in this folder, with the
        digest computed once and the checkpoint read once (the engine resumes from that copy).
        A finished run or a checkpoint of other settings is refused, or with `force` deleted
        (rank 0) so that the run starts afresh. A corrupt checkpoint raises CheckpointError and
        is never deleted."""
        digest = result_digest(cfg)
        if self.finished:
            why = self._finished_differs(cfg, digest)
            if why is None:
                return Start("done", digest)
            if why and not force:
                return Start("refused", digest, why=(
                    f"{self.out} holds a finished run with other settings ({why}); train into a new --out folder, "
                    f"or pass --force to retrain this one from scratch (deletes its checkpoint and metrics)"))
            if why:
                log.info("--force: retraining %s from scratch", self.out)
                self._remove(METRICS, CHECKPOINT)
        state = self._checkpoint()
        if state is None:
            return Start("fresh", digest)
        if state["config_hash"] == digest:
            return Start("resume", digest, state)
        keys = differing_keys(dict(state.get("config") or {}), cfg)
        why = "keys: " + (", ".join(keys) if keys else f"digest {state['config_hash']}")
        if not force:
            return Start("refused", digest, why=(
                f"{self.path(CHECKPOINT)} belongs to an unfinished run with other settings ({why}); pass --force "
                f"to discard it and start from scratch, or train into a new --out folder"))
        log.info("--force: removing the stale checkpoint %s (%s)", self.path(CHECKPOINT), why)
        self._remove(CHECKPOINT)
        return Start("fresh", digest)

    def _finished_differs(self, cfg: Mapping[str, Any], digest: str) -> str | None:
        """For a finished folder: None when it is done with `cfg`, '' when only `epochs` grew and
        its checkpoint can continue, else what differs."""
        metrics = read_metrics(self.out)
        if metrics.get("config_hash") != digest:
            keys = differing_keys(read_config(self.out), cfg)
            return "keys: " + (", ".join(keys) if keys else "unknown (no config.yaml)")
        if cfg["epochs"] == metrics.get("epochs"):
            return None
        if cfg["epochs"] > metrics.get("epochs", 0) and self.path(CHECKPOINT).exists():
            return ""
        return f"epochs {metrics.get('epochs')} -> {cfg['epochs']}"

    def _remove(self, *names: str) -> None:
        if is_rank_zero():  # the ranks of one run share the folder: one deletes
            for name in names:
                self.path(name).unlink(missing_ok=True)

    # --- checkpoint ------------------------------------------------------------------
    def _checkpoint(self) -> dict[str, Any] | None:
        """checkpoint.pt (safe unpickler), or None when there is none; CheckpointError when it
        cannot be read or lacks the suite's fields."""
        import torch

        path = self.path(CHECKPOINT)
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated zip, bad pickle, foreign object: all unusable
            raise CheckpointError(
                f"checkpoint {path} is corrupt or not a checkpoint of this suite ({type(e).__name__}: {e}); "
                f"delete it to start the run from scratch") from e
        if not isinstance(state, dict) or "config_hash" not in state:
            raise CheckpointError(f"checkpoint {path} lacks the suite's fields; delete it to start from scratch")
        return state

    def write_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Model, optimiser, scheduler, epoch, RNG states, history, config and its digest (atomic)."""
        save_torch(self.path(CHECKPOINT), dict(state))

    # --- files -----------------------------------------------------------------------
    def write_config(self, cfg: Mapping[str, Any]) -> None:
        import yaml

        write_text(self.path(CONFIG), yaml.safe_dump(dict(cfg), sort_keys=True))

    def write_history(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """history.csv (schema: HISTORY_COLUMNS); a row without one of those columns is a bug."""
        for r in rows:
            missing = [c for c in HISTORY_COLUMNS if c not in r]
            if missing:
                raise ValueError(f"history row of epoch {r.get('epoch')} lacks {missing} (asge.runfolder.HISTORY_COLUMNS)")
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
