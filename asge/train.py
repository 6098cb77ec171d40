"""Train one method on one data set and write a complete run folder.

    python -m asge.train --method asge --dataset mnist --out results/runs/asge-mnist-s0
    python -m asge.train --method bp --dataset cifar10 --config my.yaml --set epochs=5 --set lr=2e-3 --out ...
    python -m asge.train --request RUN_DIR/request.yaml --out RUN_DIR --set threads=1   # retrain a request
    python -m asge.train --request '{"method": "asge", ...}' --out RUN_DIR --force        # the workflow's way

Config layers (later wins, see asge.runconfig): defaults in code -> config/runs/<method>/<dataset>.yaml
(if it exists) -> each --config file -> each --set key=value. With --request the config is the
request the workflow resolved (a file, or inline JSON that is saved as <out>/request.yaml),
plus runtime keys only ($ASGE_RUNTIME, --set). The run
folder (asge.runfolder) gets config.yaml, history.csv, checkpoint.pt (every epoch; a rerun
resumes from it), diagnostics.pt and metrics.json, written last: its presence means "finished".
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

from asge.config import ConfigError
from asge.ranks import is_rank_zero
from asge.runconfig import load_request, request_config, resolve, write_request

if TYPE_CHECKING:
    from asge.runfolder import RunFolder

__all__ = ["main", "resolve"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked for contradictory options."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", help="registered method (not with --request)")
    ap.add_argument("--dataset", help="data set (not with --request)")
    ap.add_argument("--request", default=None,
                    help="a resolved config: a request file, or a JSON object (saved as <out>/request.yaml)")
    ap.add_argument("--out", required=True, help="run folder")
    ap.add_argument("--config", action="append", default=[], help="YAML file of key: value (repeatable)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key (repeatable)")
    ap.add_argument("--no-defaults", action="store_true", help="skip config/runs/<method>/<dataset>.yaml")
    ap.add_argument("--mlflow-experiment", default=None, help="log the run to this MLflow experiment")
    ap.add_argument("--run-name", default=None, help="MLflow run name (default: the run folder's name)")
    ap.add_argument("--check", action="store_true", help="validate the config, print it and exit")
    ap.add_argument("--force", action="store_true",
                    help="retrain a finished run folder whose settings differ (deletes its checkpoint and metrics)")
    ap.add_argument("--wait", action="store_true",
                    help="if another process trains into --out, wait for it instead of refusing "
                         "(also when $ASGE_WAIT_FOR_LOCK=1, as the workflow sets for its jobs)")
    args = ap.parse_args(argv)
    if args.request is None and not (args.method and args.dataset):
        ap.error("give --method and --dataset, or --request")
    if args.request is not None and (args.method or args.dataset or args.config or args.no_defaults):
        ap.error("--request holds the whole config: give no --method, --dataset, --config or --no-defaults with it")
    return args


def load_config(args: argparse.Namespace) -> tuple[dict | None, dict]:
    """(request or None, the run's validated config); raises ConfigError/ValueError."""
    if args.request is not None:
        request = load_request(args.request)
        return request, request_config(request, args.set)
    return None, resolve(args.method, args.dataset, args.config, args.set, not args.no_defaults)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a model hub
    try:
        request, cfg = load_config(args)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(json.dumps(cfg, indent=2, sort_keys=True))
        return 0
    return train(args, cfg, request)


def train(args: argparse.Namespace, cfg: dict, request: dict | None) -> int:
    """Train `cfg` into args.out (or find it finished); the exit code, with one clear line on failure."""
    # here, not at the top: `--check` and config errors answer without importing torch
    from asge.data import DataError
    from asge.engine import NonFiniteLoss, Trainer
    from asge.runfolder import CHECKPOINT, CheckpointError, RunFileCorrupt, RunFolder, RunFolderBusy
    from asge.runtime import DeviceError
    from asge.stopping import Terminated, raise_on_sigterm

    folder = RunFolder(args.out)
    callbacks = []
    if args.mlflow_experiment:
        from asge.tracking import MLflowCallback

        callbacks.append(MLflowCallback(experiment=args.mlflow_experiment, run_name=args.run_name or folder.out.name,
                                        cfg=cfg))
    raise_on_sigterm()
    try:
        with folder.lock(wait=args.wait or os.environ.get("ASGE_WAIT_FOR_LOCK") == "1"):
            start = folder.start(cfg, force=args.force)
            if start.kind == "refused":
                print(f"error: {start.why}", file=sys.stderr)
                return 2
            if start.kind == "done":
                restore_start_files(folder, cfg, request)
                print(f"{folder.path('metrics.json')} exists: this run is finished with these settings",
                      file=sys.stderr)
                return 0
            # after the decision: a refused folder keeps the request of its result; rank 0 writes files
            if request is not None and is_rank_zero():
                write_request(folder.path("request.yaml"), request)
            Trainer(cfg, folder, callbacks, start).run()
    except (RunFolderBusy, RunFileCorrupt) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Terminated as e:
        kept = ("its checkpoint keeps the last finished epoch: rerun the same command to resume"
                if folder.path(CHECKPOINT).exists() else "no epoch had finished: a rerun starts afresh")
        print(f"error: {e} before {folder.out} finished; {kept}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except (DataError, CheckpointError, NonFiniteLoss, DeviceError) as e:
        # known failures: one clear message, no traceback; finished files are untouched
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def restore_start_files(folder: "RunFolder", cfg: dict, request: dict | None) -> None:
    """A job that waited for an orphan finds its run finished, but Snakemake deleted the job's
    outputs before it started: put back the two that the orphan wrote at its start (rank 0)."""
    from asge.runfolder import CONFIG

    if not is_rank_zero():
        return
    if request is not None and not folder.path("request.yaml").exists():
        write_request(folder.path("request.yaml"), request)
    if not folder.path(CONFIG).exists():
        folder.write_config(cfg)


if __name__ == "__main__":
    sys.exit(main())
