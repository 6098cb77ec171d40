"""MLflow tracking of training runs: an engine callback that observes and never decides.

    from asge.tracking import MLflowCallback
    Trainer(cfg, out, [MLflowCallback(experiment="main", run_name="asge-cifar10-s0")]).run()

The run folder stays the source of truth; MLflow mirrors it for browsing:

- store: `tracking_uri`, else $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db (so a plain
  `mlflow ui --host 127.0.0.1` in the repo root finds it). Artifacts of a SQLite store live in
  mlartifacts/ beside the database file.
- one run per run folder, named deterministically (`asge-cifar10-s0`); params = every config
  key; tags = method, dataset, seed, config hash, hardware and library versions; metrics per
  epoch with step=epoch, per readout as `<column>.<readout>` (e.g. `val_acc.layer3`), epoch-wide
  ones plain (`epoch_time_s`, `images_per_s`, `lr`, `val_acc_best_readout`, ...); final metrics
  at step=epochs; config.yaml, history.csv, metrics.json and a curves plot as artifacts; the
  data set as a dataset input (name, source path, digest, split sizes; asge.tracking_store).
  Column names come from history.csv as they are: a method's training accuracy is named by
  the method (`train_acc`, FF's `train_posneg_acc`), never renamed here.
- a rerun that resumes from a checkpoint continues the unfinished MLflow run of the same name
  and config hash; a run started from scratch marks every older run of its name
  `asge.superseded=true` (with `asge.superseded_by`), so no unmarked duplicate exists. On
  success the metric history is reconciled with history.csv (missing epochs are logged).
- every store call retries with exponential back-off on transient errors (SQLite's "database is
  locked"); after the last try the hook raises, and the engine reports and swallows it: the
  run's own files are never touched by tracking. A failed run is marked FAILED.

MLflow's telemetry is switched off before it is imported: nothing here reaches the internet.

`python -m asge.tracking init --experiment main --experiment ablations [--flag FILE]` creates
the store and experiments once, before parallel writers start (the workflow's first job).
`python -m asge.tracking relocate --uri sqlite:///COPY/mlflow.db` points a copied or moved
store at the mlartifacts/ beside it (MLflow keeps absolute artifact URIs).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

# Before mlflow is imported anywhere in this process: no telemetry, no network.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

log = logging.getLogger("asge.tracking")

REPO = Path(__file__).resolve().parent.parent
TAG = "asge."  # prefix of the suite's own tags
RUN_NAME_TAG = "mlflow.runName"
#: history.csv columns that hold the same value for every readout of an epoch
EPOCH_WIDE = ("epoch_time_s", "images_per_s", "lr", "peak_memory_bytes")
#: per-epoch metrics derived from all readouts of the epoch
SUMMARY = ("val_acc_best_readout", "val_acc_last")
MAX_PARAM_CHARS = 6000

T = TypeVar("T")


def default_tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI if set, else the SQLite store at the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (relative paths against the cwd), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):]).resolve()


def artifact_location(uri: str, experiment: str) -> str | None:
    """mlartifacts/<experiment> beside a SQLite database; None (the store's default) otherwise."""
    db = sqlite_path(uri)
    if db is None:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
    return (db.parent / "mlartifacts" / safe).as_uri()


# --- retries -----------------------------------------------------------------------------
TRANSIENT = ("database is locked", "database table is locked", "busy", "unable to open database",
             "disk i/o error", "connection refused", "timed out", "temporarily unavailable")


def is_transient(e: BaseException) -> bool:
    """A store error worth retrying: SQLite lock contention or a flaky connection."""
    text = f"{type(e).__name__}: {e}".lower()
    return any(t in text for t in TRANSIENT) or type(e).__name__ == "OperationalError"


def retry(fn: Callable[..., T], *args: Any, attempts: int = 8, base_delay: float = 0.1, max_delay: float = 8.0,
          what: str = "", **kwargs: Any) -> T:
    """Call fn; on a transient error wait base_delay * 2**k (with jitter, capped) and try again.

    Non-transient errors and the last transient one propagate."""
    for k in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - classified below
            if k == attempts - 1 or not is_transient(e):
                raise
            delay = min(max_delay, base_delay * 2 ** k) * (0.5 + random.random())
            log.warning("mlflow %s failed (%s: %s); retry %d/%d in %.2fs", what or getattr(fn, "__name__", "call"),
                        type(e).__name__, str(e).splitlines()[0][:200], k + 1, attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _file_lock(path: Path | None):
    """An exclusive lock beside a SQLite file while the store is created (no-op elsewhere)."""
    if path is None:
        yield
        return
    import fcntl

    lock = path.parent / "mlartifacts" / f".{path.name}.lock"  # mlartifacts/ is git-ignored
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def make_client(uri: str):
    """An MlflowClient for `uri`; creating a new SQLite store is serialised by a file lock
    (parallel first writers to a fresh file otherwise crash in the schema migration)."""
    from mlflow.tracking import MlflowClient

    if sqlite_path(uri) is not None:
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - slow import, outside the lock

    def build():
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # forces the store (and its tables) into being
        return client

    with _file_lock(sqlite_path(uri)):
        return retry(build, what="connect")


def get_or_create_experiment(client, name: str, uri: str) -> str:
    """Id of experiment `name`, created (with artifacts beside a SQLite store) if missing."""
    from mlflow.exceptions import MlflowException

    def once() -> str:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifact_location(uri, name))
        except MlflowException as e:  # another process created it just now
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise e
            return exp.experiment_id

    return retry(once, what=f"experiment {name!r}")


# --- what gets logged --------------------------------------------------------------------
def _number(v: Any) -> float | None:
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
                f = _number(v)
                if f is None:
                    continue
                m[k if k in EPOCH_WIDE else f"{k}.{r['readout']}"] = f
        vals = [f for f in (_number(r.get("val_acc")) for r in rs) if f is not None]
        if vals:
            m["val_acc_best_readout"] = max(vals)
            last = _number(rs[-1].get("val_acc"))
            if last is not None:
                m["val_acc_last"] = last
        out[epoch] = m
    return out


def final_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The flat final metrics of a metrics.json dict."""
    out: dict[str, float] = {}

    def put(k: str, v: Any) -> None:
        f = _number(v)
        if f is not None:
            out[k] = f

    put("test_acc", metrics.get("test_acc"))
    for s, d in (metrics.get("strategies") or {}).items():
        put(f"test_acc.{s}", d.get("acc"))
        put(f"test_top5.{s}", d.get("top5"))
        put(f"inference_params.{s}", d.get("inference_params"))
        put(f"inference_memory_bytes.{s}", d.get("inference_memory_bytes"))
        # metrics.json's inference_layers counts readouts (BP: its one head), not conv blocks;
        # named for what it is here (T2 counts blocks and heads)
        put(f"inference_readouts.{s}", d.get("inference_layers"))
    for name, acc in zip(metrics.get("readouts") or [], metrics.get("test_acc_per_readout") or []):
        put(f"test_acc_readout.{name}", acc)
    for k in ("params_total", "params_trainable", "fixed_buffer_values", "epoch_time_s_mean", "train_time_s",
              "train_images_per_s", "peak_train_memory_bytes"):
        put(k, metrics.get(k))
    return out


def param_items(cfg: Mapping[str, Any]) -> dict[str, str]:
    """Every config key as an MLflow param (lists and dicts as JSON, long values cut)."""
    out = {}
    for k, v in sorted(cfg.items()):
        s = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
        out[k] = s if len(s) <= MAX_PARAM_CHARS else s[: MAX_PARAM_CHARS - 3] + "..."
    return out


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


def read_history(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


#: per-readout training-accuracy columns by what they measure; a method names its own
#: (Method.train_acc_name): FF's is its positive/negative separation rate (chance 50 %), not a
#: class accuracy, and must not sit beside the others' `train_acc` under the same name
TRAIN_ACC_COLUMNS = {"train_acc": "training accuracy (classes)",
                     "train_posneg_acc": "training pos/neg separation (chance 50 %)"}


def train_acc_column(history: list[Mapping[str, Any]]) -> str:
    """The history's training-accuracy column: `train_acc`, FF's `train_posneg_acc`, or any
    other `train_*acc` a method declares."""
    cols = list(history[0]) if history else []
    for c in (*TRAIN_ACC_COLUMNS, *cols):
        if c in cols and c.startswith("train_") and c.endswith("acc"):
            return c
    return "train_acc"


def plot_curves(history: list[Mapping[str, Any]], title: str, path: Path) -> Path | None:
    """Train and validation accuracy per epoch, one line per readout (a PNG for the run page)."""
    if not history:
        return None
    train_col = train_acc_column(history)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    readouts = list(dict.fromkeys(r["readout"] for r in history))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, col in zip(axes, (train_col, "val_acc")):
        for ro in readouts:
            pts = [(float(r["epoch"]), _number(r.get(col))) for r in history if r["readout"] == ro]
            pts = [(e, v) for e, v in pts if v is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=ro)
        ax.set_xlabel("epoch")
        ax.set_title(f"{col}: {TRAIN_ACC_COLUMNS.get(col, 'validation accuracy (classes)')}", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- the callback ------------------------------------------------------------------------
class MLflowCallback:
    """Mirrors one training run into MLflow; see the module docstring for what and how.

    Implements the hooks of asge.engine.Callback (not subclassed, so that the `init` CLI does
    not import the engine and torch). Every hook raises only after its retries are spent (the
    engine catches and reports it); nothing here writes into the run folder.
    """

    def __init__(self, experiment: str, run_name: str, tracking_uri: str | None = None, *,
                 attempts: int = 8, base_delay: float = 0.1) -> None:
        self.experiment = experiment
        self.run_name = run_name
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.attempts = attempts
        self.base_delay = base_delay
        self.client = None
        self.run_id: str | None = None
        self.cfg: dict[str, Any] = {}
        self.resumed = False

    # store calls, retried
    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return retry(getattr(self.client, name), *args, attempts=self.attempts, base_delay=self.base_delay,
                     what=name, **kwargs)

    def _log_batch(self, metrics=(), params=(), tags=()) -> None:
        metrics, params, tags = list(metrics), list(params), list(tags)
        # MLflow's batch limits: 1000 metrics, 100 params, 100 tags per call
        while metrics or params or tags:
            self._call("log_batch", self.run_id, metrics=metrics[:1000], params=params[:100], tags=tags[:100])
            metrics, params, tags = metrics[1000:], params[100:], tags[100:]

    def _metrics_at(self, step: int, values: Mapping[str, float]):
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        return [Metric(k, v, ts, step) for k, v in sorted(values.items())]

    # hooks
    def on_start(self, cfg: Mapping[str, Any], out_dir: Path, start_epoch: int) -> None:
        from mlflow.entities import Param, RunTag
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

        self.cfg = dict(cfg)
        self.client = make_client(self.tracking_uri)
        exp_id = get_or_create_experiment(self.client, self.experiment, self.tracking_uri)
        chash = _config_hash(cfg)
        same_name = self._call("search_runs", [exp_id], filter_string=f"tags.`{MLFLOW_RUN_NAME}` = '{self.run_name}'",
                               max_results=1000, order_by=["attributes.start_time DESC"])
        live = [r for r in same_name if r.data.tags.get(TAG + "superseded") != "true"]
        resumable = [r for r in live if r.info.status != "FINISHED" and r.data.tags.get(TAG + "config_hash") == chash]
        target = resumable[0] if start_epoch > 0 and resumable else None
        tags = {
            TAG + "method": str(cfg.get("method")), TAG + "dataset": str(cfg.get("dataset")),
            TAG + "seed": str(cfg.get("seed")), TAG + "config_hash": chash, TAG + "study": self.experiment,
            TAG + "run_dir": str(Path(out_dir).resolve()), "mlflow.source.name": "asge.train",
            "mlflow.source.type": "LOCAL", **environment_tags(),
        }
        if target is not None:
            self.run_id = target.info.run_id
            self.resumed = True
            self._call("update_run", self.run_id, status="RUNNING")
            tags[TAG + "resumed_at_epoch"] = str(start_epoch)
            tags[TAG + "resume_count"] = str(int(target.data.tags.get(TAG + "resume_count", "0")) + 1)
            logged = target.data.params
        else:
            run = self._call("create_run", exp_id, run_name=self.run_name,
                             tags={MLFLOW_RUN_NAME: self.run_name, TAG + "config_hash": chash})
            self.run_id = run.info.run_id
            logged = {}
            if start_epoch > 0:
                tags[TAG + "resumed_at_epoch"] = str(start_epoch)  # the earlier MLflow run was lost
        for old in live:
            if old.info.run_id != self.run_id:
                for k, v in ((TAG + "superseded", "true"), (TAG + "superseded_by", self.run_id)):
                    self._call("set_tag", old.info.run_id, k, v)
                if old.info.status in ("RUNNING", "SCHEDULED"):
                    self._call("set_terminated", old.info.run_id, status="KILLED")
        params = param_items(cfg)
        changed = {k: v for k, v in params.items() if k in logged and logged[k] != v}
        for k, v in changed.items():  # params are immutable: a resume may grow `epochs`
            tags[f"{TAG}resume.{k}"] = v
        self._log_batch(params=[Param(k, v) for k, v in params.items() if k not in logged],
                        tags=[RunTag(k, v) for k, v in tags.items()])

    def on_epoch(self, epoch: int, rows: list[dict[str, Any]], summary: dict[str, float]) -> None:
        if self.run_id is None:
            return
        values = epoch_metrics(rows).get(epoch, {})
        values.update({k: f for k, f in ((k, _number(v)) for k, v in summary.items()) if f is not None})
        self._log_batch(metrics=self._metrics_at(epoch, values))

    def on_success(self, metrics: dict[str, Any], out_dir: Path) -> None:
        from mlflow.entities import RunTag

        if self.run_id is None:
            return
        out_dir = Path(out_dir)
        history = read_history(out_dir / "history.csv")
        self._reconcile(history)
        step = int(metrics.get("epochs") or self.cfg.get("epochs") or 0)
        self._log_batch(metrics=self._metrics_at(step, final_metrics(metrics)))
        tags = {TAG + "best_readout": str(metrics.get("best_readout")),
                TAG + "primary_strategy": str(metrics.get("primary_strategy"))}
        for k, v in (metrics.get("hardware") or {}).items():
            tags[f"{TAG}hw.{k}"] = str(v)
        self._log_batch(tags=[RunTag(k, v) for k, v in tags.items()])
        self._log_dataset(metrics)
        for name in ("config.yaml", "history.csv", "metrics.json"):
            if (out_dir / name).is_file():
                self._call("log_artifact", self.run_id, str(out_dir / name))
        with tempfile.TemporaryDirectory() as tmp:
            png = plot_curves(history, f"{self.run_name} ({self.experiment})", Path(tmp) / "curves.png")
            if png is not None:
                self._call("log_artifact", self.run_id, str(png), "plots")
        self._call("set_terminated", self.run_id, status="FINISHED")

    def _log_dataset(self, metrics: Mapping[str, Any]) -> None:
        """The data set (name, source, digest, split sizes) as MLflow's dataset input. Runs of
        one experiment share a dataset row: two runs finishing together race to insert it and
        the loser gets a UNIQUE-constraint error, after which a retry finds the row."""
        from asge.tracking_store import dataset_input

        for attempt in range(4):
            try:
                self._call("log_inputs", self.run_id, datasets=[dataset_input(self.cfg, metrics)])
                return
            except Exception as e:  # noqa: BLE001 - a missing record must not fail the run's tracking
                if "unique constraint" in str(e).lower() and attempt < 3:
                    time.sleep(0.2 * (attempt + 1) * (0.5 + random.random()))
                    continue
                log.warning("mlflow: dataset input of %s not logged: %s: %s", self.run_name, type(e).__name__, e)
                return

    def on_failure(self, error: BaseException, out_dir: Path) -> None:
        if self.run_id is None:
            return
        with contextlib.suppress(Exception):
            self._call("set_tag", self.run_id, TAG + "error", f"{type(error).__name__}: {error}"[:5000])
        self._call("set_terminated", self.run_id, status="FAILED")

    def _reconcile(self, history: list[Mapping[str, Any]]) -> None:
        """Log every (metric, epoch) of history.csv that the run lacks (lost or failed calls,
        a resumed run whose earlier MLflow run is gone); values already there are left alone."""
        expected = epoch_metrics(history)
        keys = sorted({k for m in expected.values() for k in m})
        missing: dict[int, dict[str, float]] = {}
        for k in keys:
            have = {m.step for m in self._call("get_metric_history", self.run_id, k)}
            for epoch, m in expected.items():
                if k in m and epoch not in have:
                    missing.setdefault(epoch, {})[k] = m[k]
        batch = [x for epoch, vals in sorted(missing.items()) for x in self._metrics_at(epoch, vals)]
        if batch:
            log.info("mlflow: logging %d missing history values of %s", len(batch), self.run_name)
            self._log_batch(metrics=batch)


def _config_hash(cfg: Mapping[str, Any]) -> str:
    from asge.config import config_hash

    return config_hash(cfg)


# --- CLI: create the store and experiments once --------------------------------------------
def init_store(uri: str, experiments: list[str]) -> dict[str, str]:
    """Create the tracking store (tables of a new SQLite file) and the experiments."""
    client = make_client(uri)
    return {name: get_or_create_experiment(client, name, uri) for name in experiments}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Create the MLflow store and experiments before parallel jobs log to it.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init", help="create the store and the experiments")
    p.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db)")
    p.add_argument("--experiment", action="append", default=[], help="experiment to create (repeatable)")
    p.add_argument("--flag", default=None, help="write this file (JSON: uri and experiment ids) when done")
    r = sub.add_parser("relocate", help="point a copied or moved SQLite store at the mlartifacts/ beside it")
    r.add_argument("--uri", default=None, help="the store (default: $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db)")
    r.add_argument("--artifacts", default=None, help="artifact folder (default: mlartifacts/ beside the database)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    uri = args.uri or default_tracking_uri()
    if args.cmd == "relocate":
        from asge.tracking_store import relocate

        n = relocate(uri, Path(args.artifacts) if args.artifacts else None)
        print(f"mlflow store {uri}: {n} artifact locations rewritten", file=sys.stderr)
        return 0
    ids = init_store(uri, args.experiment)
    print(f"mlflow store {uri}: experiments {ids}", file=sys.stderr)
    if args.flag:
        flag = Path(args.flag)
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.write_text(json.dumps({"tracking_uri": uri, "experiments": ids}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
