"""MLflowCallback: mirrors one training run into MLflow; an engine callback that observes and
never decides (the run folder stays the source of truth).

- one MLflow run per attempt, named deterministically (`asge-cifar10-s0`); what is logged is
  defined in asge.tracking.records, the store in asge.tracking.store;
- a rerun that resumes from a checkpoint continues the unfinished MLflow run of the same name
  and result digest; a run started from scratch marks every older run of its name
  `asge.superseded=true` (with `asge.superseded_by`), so no unmarked duplicate exists;
- at the start of an attempt every other RUNNING run of its name (a killed attempt) is ended
  KILLED, so only the live attempt is RUNNING;
- a run that fails before it starts (setup: missing data, bad device) still appears, FAILED,
  with its params (from the `cfg` given to the constructor) and the error as tag and note;
- the per-epoch rows come from the engine (`on_epoch`); on success every (metric, epoch) of
  those rows that the run lacks is logged (lost calls; a resumed attempt adds the epochs of the
  earlier attempts, read from history.csv once at the start);
- every hook raises only after the store's retries are spent (the engine reports and swallows
  it); nothing here writes into the run folder.
"""
from __future__ import annotations

import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from asge.ranks import is_rank_zero
from asge.runfolder import CONFIG, HISTORY, METRICS, Metrics, read_history
from asge.stopping import Terminated
from asge.tracking.records import (
    TAG,
    epoch_metrics,
    error_text,
    final_metrics,
    final_tags,
    metrics_digest,
    param_items,
    result_digest,
    run_tags,
    summary_metrics,
)
from asge.tracking.store import default_tracking_uri, get_or_create_experiment, make_client, retry

log = logging.getLogger("asge.tracking")

ACTIVE = ("RUNNING", "SCHEDULED")


def history_rows(out_dir: Path) -> list[dict[str, Any]]:
    """history.csv's rows (asge.runfolder.read_history) as records; [] when there is none."""
    return read_history(out_dir).to_dict("records")


def earlier_history(out_dir: Path, start_epoch: int) -> list[dict[str, Any]]:
    """The history rows of epochs 1..start_epoch that an earlier attempt left in the folder
    (a resumed run continues from them; later rows, if any, are retrained)."""
    if start_epoch <= 0:
        return []
    return [r for r in history_rows(out_dir) if int(r["epoch"]) <= start_epoch]


class MLflowCallback:
    """Mirrors one training run into MLflow; see the module docstring for what and how.

    Implements the hooks of asge.engine.Callback (not subclassed, so that the `init` CLI does
    not import the engine and torch). `cfg`: the resolved config, so that a run that fails
    during setup (before `on_start`) is recorded with its params.
    """

    #: the run's start and end (ms since the epoch); None: now. An import of a finished run
    #: (asge.tracking.importer) sets them from the run folder
    start_time_ms: int | None = None
    end_time_ms: int | None = None

    def __init__(self, experiment: str, run_name: str, tracking_uri: str | None = None, *,
                 cfg: Mapping[str, Any] | None = None, attempts: int = 8, base_delay: float = 0.1) -> None:
        self.experiment = experiment
        self.run_name = run_name
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.attempts = attempts
        self.base_delay = base_delay
        self.client: Any = None
        self.run_id: str | None = None
        self.cfg: dict[str, Any] = dict(cfg or {})
        self.history: list[Mapping[str, Any]] = []  # every epoch's rows this run knows of
        self.resumed = False

    # --- store calls, retried ----------------------------------------------------------
    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return retry(getattr(self.client, name), *args, attempts=self.attempts, base_delay=self.base_delay,
                     what=name, **kwargs)

    def _connect(self) -> str:
        """Open the store; the experiment's id."""
        self.client = make_client(self.tracking_uri)
        return get_or_create_experiment(self.client, self.experiment, self.tracking_uri)

    def _log_batch(self, metrics: Iterable[Any] = (), params: Iterable[Any] = (), tags: Iterable[Any] = ()) -> None:
        metrics, params, tags = list(metrics), list(params), list(tags)
        # MLflow's batch limits: 1000 metrics, 100 params, 100 tags per call
        while metrics or params or tags:
            self._call("log_batch", self.run_id, metrics=metrics[:1000], params=params[:100], tags=tags[:100])
            metrics, params, tags = metrics[1000:], params[100:], tags[100:]

    def _log_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self._log_batch(tags=[RunTag(k, v) for k, v in tags.items()])

    def _timestamp(self, step: int) -> int:
        """When the values of `step` were measured (ms); live: now."""
        return int(time.time() * 1000)

    def _metrics_at(self, step: int, values: Mapping[str, float]) -> list[Any]:
        from mlflow.entities import Metric

        ts = self._timestamp(step)
        return [Metric(k, v, ts, step) for k, v in sorted(values.items())]

    def _run_tags(self, cfg: Mapping[str, Any], out_dir: Path, digest: str) -> dict[str, str]:
        """The tags known before training (asge.tracking.records.run_tags)."""
        return run_tags(cfg, out_dir, self.experiment, digest)

    def _create_run(self, exp_id: str, digest: str) -> None:
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

        run = self._call("create_run", exp_id, run_name=self.run_name, start_time=self.start_time_ms,
                         tags={MLFLOW_RUN_NAME: self.run_name, TAG + "config_hash": digest})
        self.run_id = run.info.run_id

    # --- hooks -------------------------------------------------------------------------
    def on_start(self, cfg: Mapping[str, Any], out_dir: Path, start_epoch: int) -> None:
        from mlflow.entities import Param
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

        self.cfg = dict(cfg)
        self.history = earlier_history(out_dir, start_epoch)
        exp_id = self._connect()
        digest = result_digest(cfg)
        same_name = self._call("search_runs", [exp_id], filter_string=f"tags.`{MLFLOW_RUN_NAME}` = '{self.run_name}'",
                               max_results=1000, order_by=["attributes.start_time DESC"])
        live = [r for r in same_name if r.data.tags.get(TAG + "superseded") != "true"]
        resumable = [r for r in live if r.info.status != "FINISHED" and r.data.tags.get(TAG + "config_hash") == digest
                     and r.data.tags.get(TAG + "failed_in") != "setup"]  # a setup failure trained nothing
        target = resumable[0] if start_epoch > 0 and resumable else None
        tags = self._run_tags(cfg, out_dir, digest)
        if target is not None:
            self.run_id = target.info.run_id
            self.resumed = True
            self._call("update_run", self.run_id, status="RUNNING")
            tags[TAG + "resumed_at_epoch"] = str(start_epoch)
            tags[TAG + "resume_count"] = str(int(target.data.tags.get(TAG + "resume_count", "0")) + 1)
            logged = target.data.params
        else:
            self._create_run(exp_id, digest)
            logged = {}
            if start_epoch > 0:
                tags[TAG + "resumed_at_epoch"] = str(start_epoch)  # the earlier MLflow run was lost
        self._end_earlier(same_name, live)
        params = param_items(cfg)
        for k, v in params.items():  # params are immutable: a resume may grow `epochs`
            if k in logged and logged[k] != v:
                tags[f"{TAG}resume.{k}"] = v
        self._log_batch(params=[Param(k, v) for k, v in params.items() if k not in logged])
        self._log_tags(tags)

    def _end_earlier(self, same_name: list[Any], live: list[Any]) -> None:
        """Mark the other live runs of this name superseded by this one, and end every other
        RUNNING one (an attempt that was killed) as KILLED: only the live attempt runs."""
        live_ids = {r.info.run_id for r in live}
        for old in same_name:
            if old.info.run_id == self.run_id:
                continue
            if old.info.run_id in live_ids:
                self._log_run_tags(old.info.run_id, {TAG + "superseded": "true", TAG + "superseded_by": self.run_id})
            if old.info.status in ACTIVE:
                self._call("set_terminated", old.info.run_id, status="KILLED")

    def _log_run_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self._call("set_tag", run_id, k, v)

    def on_epoch(self, epoch: int, rows: list[dict[str, Any]], summary: dict[str, float]) -> None:
        self.history += rows  # kept first: a lost call is made good on success
        if self.run_id is None:
            return
        values = epoch_metrics(rows).get(epoch, {})
        values.update(summary_metrics(summary))
        self._log_batch(metrics=self._metrics_at(epoch, values))

    def on_success(self, metrics: Metrics, out_dir: Path) -> None:
        if self.run_id is None:
            return
        out_dir = Path(out_dir)
        self._reconcile(self.history)
        step = int(metrics.get("epochs") or self.cfg.get("epochs") or 0)
        self._log_batch(metrics=self._metrics_at(step, final_metrics(metrics)))
        # the metrics digest identifies the finished run: an import of its folder skips it
        self._log_tags({**final_tags(metrics), TAG + "metrics_digest": metrics_digest(out_dir)})
        self._log_dataset(metrics)
        for name in (CONFIG, HISTORY, METRICS):
            if (out_dir / name).is_file():
                self._call("log_artifact", self.run_id, str(out_dir / name))
        from asge.tracking.plots import plot_curves

        with tempfile.TemporaryDirectory() as tmp:
            png = plot_curves(self.history, f"{self.run_name} ({self.experiment})", Path(tmp) / "curves.png")
            if png is not None:
                self._call("log_artifact", self.run_id, str(png), "plots")
        self._call("set_terminated", self.run_id, status="FINISHED", end_time=self.end_time_ms)

    def on_failure(self, error: BaseException, out_dir: Path) -> None:
        if self.run_id is None:
            self._record_setup_failure(error, out_dir)
            return
        try:
            self._log_tags({TAG + "error": error_text(error)})
        except Exception:  # noqa: BLE001 - the status below matters more than the tag
            log.warning("mlflow: error tag of %s not logged", self.run_name)
        # stopped from outside (SIGTERM, Ctrl-C) is KILLED, as MLflow's own runs mark it
        status = "KILLED" if isinstance(error, (Terminated, KeyboardInterrupt)) else "FAILED"
        self._call("set_terminated", self.run_id, status=status)

    def _record_setup_failure(self, error: BaseException, out_dir: Path) -> None:
        """A run that failed before `on_start` (e.g. missing data files) as a FAILED run with
        its params and the error, so that it is not missing from MLflow."""
        from mlflow.entities import Param

        if not is_rank_zero():
            return  # under torchrun one record per run, from rank 0
        exp_id = self._connect()
        digest = result_digest(self.cfg) if self.cfg else ""
        self._create_run(exp_id, digest)
        self._log_batch(params=[Param(k, v) for k, v in param_items(self.cfg).items()])
        text = error_text(error)
        self._log_tags({**self._run_tags(self.cfg, out_dir, digest), TAG + "error": text,
                        TAG + "failed_in": "setup", "mlflow.note.content": f"Failed during setup: {text}"})
        self._call("set_terminated", self.run_id, status="FAILED")

    def _log_dataset(self, metrics: Metrics) -> None:
        """The data set (name, source, digest, split sizes) as MLflow's dataset input. Runs of
        one experiment share a dataset row: two runs finishing together race to insert it and
        the loser gets a UNIQUE-constraint error, after which a retry finds the row."""
        from asge.tracking.store import dataset_input

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

    def _reconcile(self, history: list[Mapping[str, Any]]) -> None:
        """Log every (metric, epoch) of the history that the run lacks (lost or failed calls,
        the epochs of an earlier attempt whose MLflow run is gone); values there are kept."""
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
