"""Committed run folders into an MLflow store, as if they had been logged live (no retraining).

    python -m asge.tracking import results/reference/runs [--experiment-prefix reference-] \\
        [--tracking-uri sqlite:///mlflow.db]

Each `<runs>/<study>/<run>/` folder with a metrics.json becomes one FINISHED run named `<run>`
in the experiment `<prefix><study>` (the workflow's convention). The live callback does the
logging (`ImportedRun` replays the folder through MLflowCallback's hooks), so params, per-epoch
metrics, tags, dataset input and artifacts are the same as a live run's; imported runs carry
`asge.imported=true` and `asge.imported_from`. A run already in the store (FINISHED, not
superseded, same name, `asge.config_hash` and `asge.metrics_digest`) is skipped, so a second
import adds nothing; so is a folder without metrics.json (unfinished).
"""
from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from asge.runfolder import METRICS, Metrics, read_config, read_metrics
from asge.tracking.callback import MLflowCallback, history_rows
from asge.tracking.records import REPO, TAG, metrics_digest, number, recorded_environment_tags, result_digest, run_tags
from asge.tracking.store import default_tracking_uri, locate_source


def finished_at(folder: Path) -> float:
    """When the run finished (s since the epoch): metrics.json's mtime, or the time of the commit
    that last changed it if earlier (a fresh clone's mtimes are the checkout time; the folders
    are committed as they land, so the commit is close to the end of the run)."""
    path = Path(folder) / METRICS
    t = path.stat().st_mtime
    with contextlib.suppress(Exception):
        out = subprocess.run(["git", "-C", str(path.parent), "log", "-1", "--format=%ct", "--", METRICS],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            t = min(t, float(out.stdout.strip()))
    return t


def run_times(folder: Path, metrics: Metrics, rows: list[dict[str, str]]) -> tuple[int, int, dict[int, int]]:
    """(start, end, {epoch: end of that epoch}) in ms: the end from `finished_at`, the start that
    much training time earlier, each epoch after the epoch times before it."""
    end = finished_at(folder)
    epoch_s: dict[int, float] = {}
    for r in rows:
        epoch_s.setdefault(int(float(r["epoch"])), number(r.get("epoch_time_s")) or 0.0)
    start = end - (number(metrics.get("train_time_s")) or sum(epoch_s.values()))
    ends, t = {}, start
    for epoch in sorted(epoch_s):
        t += epoch_s[epoch]
        ends[epoch] = int(min(t, end) * 1000)
    return int(start * 1000), int(end * 1000), ends


def shown_path(path: Path) -> str:
    """The folder relative to the repository (stable across clones), else absolute."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


class ImportedRun(MLflowCallback):
    """One finished run folder replayed through the live callback's hooks, with the run's own
    times, the environment its metrics.json records, and the import tags."""

    def __init__(self, folder: Path, experiment: str, tracking_uri: str, cfg: Mapping[str, Any], metrics: Metrics,
                 rows: list[dict[str, str]]) -> None:
        super().__init__(experiment, Path(folder).name, tracking_uri, cfg=cfg)
        self.folder = Path(folder)
        self.metrics = metrics
        self.rows = rows
        self.start_time_ms, self.end_time_ms, self.epoch_ms = run_times(self.folder, metrics, rows)

    def _timestamp(self, step: int) -> int:
        return self.epoch_ms.get(step, self.end_time_ms or 0)

    def _run_tags(self, cfg: Mapping[str, Any], out_dir: Path, digest: str) -> dict[str, str]:
        env = recorded_environment_tags(self.metrics.get("hardware") or {})
        return {**run_tags(cfg, out_dir, self.experiment, digest, env=env), TAG + "imported": "true",
                TAG + "imported_from": shown_path(self.folder)}

    def _log_dataset(self, metrics: Metrics) -> None:
        # its digest covers the data files: without them there is nothing true to log
        try:
            found = Path(locate_source(self.cfg)[0]).exists()
        except Exception:  # noqa: BLE001 - an odd config must not stop the import
            found = False
        if not found:
            self._log_tags({TAG + "import.dataset_input": f"skipped: {self.cfg.get('dataset')} not found on the "
                                                          f"importing machine"})
            return
        super()._log_dataset(metrics)

    def already_logged(self) -> bool:
        """A FINISHED, current run of this name, config digest and metrics.json is in the store."""
        exp_id = self._connect()
        query = (f"tags.`mlflow.runName` = '{self.run_name}' and tags.`{TAG}config_hash` = "
                 f"'{result_digest(self.cfg)}' and tags.`{TAG}metrics_digest` = '{metrics_digest(self.folder)}'")
        found = self._call("search_runs", [exp_id], filter_string=query, max_results=1000)
        return any(r.info.status == "FINISHED" and r.data.tags.get(TAG + "superseded") != "true" for r in found)

    def replay(self) -> None:
        """Log the run as the engine's hooks would have: start, every epoch, success."""
        try:
            self.on_start(self.cfg, self.folder, 0)
            by_epoch: dict[int, list[dict[str, str]]] = {}
            for r in self.rows:
                by_epoch.setdefault(int(float(r["epoch"])), []).append(r)
            for epoch, rows in sorted(by_epoch.items()):
                # no summary: the engine's (epoch times, lr, val_acc_best_readout, val_acc_last)
                # is derived from the rows by epoch_metrics, to the same values
                self.on_epoch(epoch, rows, {})
            self.on_success(self.metrics, self.folder)
        except Exception as e:
            if self.run_id is not None:  # a half-imported run is FAILED, and a re-import replaces it
                with contextlib.suppress(Exception):
                    self.on_failure(e, self.folder)
            raise


def import_run(folder: Path, experiment: str, tracking_uri: str) -> str:
    """Import one run folder; '' when imported, else why it was skipped."""
    if not (Path(folder) / METRICS).is_file():
        return "unfinished (no metrics.json)"
    cfg = read_config(folder)
    if not cfg:
        return "no config.yaml"
    run = ImportedRun(folder, experiment, tracking_uri, cfg, read_metrics(folder), history_rows(folder))
    if run.already_logged():
        return "already in the store"
    run.replay()
    return ""


def run_folders(runs: Path) -> list[tuple[str, Path]]:
    """(study, folder) of every `<runs>/<study>/<run>/`, sorted."""
    def subdirs(p: Path) -> list[Path]:
        return sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))

    return [(study.name, folder) for study in subdirs(Path(runs)) for folder in subdirs(study)]


def preset_prefix(runs: Path) -> str:
    """The experiment prefix of the preset whose results folder holds `runs` (results/<x>/runs
    of config/presets/*.yaml), else ''."""
    import yaml

    target = Path(runs).resolve().parent
    for path in sorted((REPO / "config" / "presets").glob("*.yaml")):
        with contextlib.suppress(Exception):
            preset = yaml.safe_load(path.read_text()) or {}
            if preset.get("results") and (REPO / preset["results"]).resolve() == target:
                return str((preset.get("mlflow") or {}).get("experiment_prefix") or "")
    return ""


@dataclass
class ImportSummary:
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def line(self) -> str:
        failed = f", failed {len(self.failed)}" if self.failed else ""
        return f"imported {len(self.imported)}, skipped {len(self.skipped)}{failed}"


def import_runs(runs: Path, prefix: str | None = None, tracking_uri: str | None = None,
                say: Callable[[str], None] = print) -> ImportSummary:
    """Import every run folder under `runs` into experiments `<prefix><study>`; `say` gets one
    line per folder. prefix None: the preset's (`preset_prefix`)."""
    uri = tracking_uri or default_tracking_uri()
    prefix = preset_prefix(runs) if prefix is None else prefix
    if not Path(runs).is_dir():
        raise FileNotFoundError(f"{runs}: no such folder (expected <runs>/<study>/<run>/)")
    summary = ImportSummary()
    for study, folder in run_folders(runs):
        name = f"{prefix}{study}/{folder.name}"
        try:
            why = import_run(folder, prefix + study, uri)
        except Exception as e:  # noqa: BLE001 - one broken folder must not stop the others
            summary.failed.append(name)
            say(f"failed   {name}: {type(e).__name__}: {e}")
            continue
        (summary.skipped if why else summary.imported).append(name)
        say(f"skipped  {name}: {why}" if why else f"imported {name}")
    return summary
