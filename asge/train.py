"""Train one method on one data set and write a complete run folder.

    python -m asge.train --method asge --dataset mnist --out results/runs/asge-mnist-s0
    python -m asge.train --method bp --dataset cifar10 --config my.yaml --set epochs=5 --set lr=2e-3 --out ...

Config layers (later wins): defaults in code -> config/runs/<method>/<dataset>.yaml (if it
exists) -> each --config file -> each --set key=value. The run folder gets config.yaml,
history.csv (per epoch, per readout), checkpoint.pt (every epoch; a rerun resumes from it)
and metrics.json, written last: its presence means the run finished.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent


def default_run_file(method: str, dataset: str) -> Path:
    return REPO / "config" / "runs" / method / f"{dataset}.yaml"


def resolve(method: str, dataset: str, config_files: list[str] = (), overrides: list[str] = (),
            use_defaults: bool = True) -> dict[str, Any]:
    """The validated config of a run (raises ConfigError/ValueError with a clear message)."""
    from asge.config import load_yaml, parse_override, resolve_config
    from asge.data import dataset_info
    from asge.registry import method_class

    cls = method_class(method)
    dataset_info(dataset)  # unknown data set: clear error listing the known ones
    layers = []
    run_file = default_run_file(method, dataset)
    if use_defaults and run_file.exists():
        layers.append(load_yaml(run_file))
    layers += [load_yaml(f) for f in config_files]
    layers.append(dict(parse_override(o) for o in overrides))
    cfg = resolve_config(method, dataset, layers, cls)
    dataset_info(dataset, cfg)  # checks the keys that depend on the data set (input_mean, input_std)
    return cfg


class RunFolderBusy(RuntimeError):
    """Another process is training into the same run folder."""


@contextlib.contextmanager
def run_folder_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on the run folder for the whole run (released when the process dies).
    Under torchrun only rank 0 takes it: the ranks of one run share the folder by design."""
    import fcntl

    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderBusy(f"another process is training into {out} (it holds {out / '.lock'}); "
                                f"wait for it to finish or use another --out folder") from None
        yield


def finished_run_verdict(out: Path, cfg: dict[str, Any]) -> tuple[str, str]:
    """("done", ""), ("extend", "") when only `epochs` grew (resume from the checkpoint), or
    ("differs", the keys that differ) for a finished run folder."""
    from asge.config import HASH_IGNORES, config_hash, load_yaml

    metrics = json.loads((out / "metrics.json").read_text())
    if metrics.get("config_hash") == config_hash(cfg):
        if cfg["epochs"] == metrics.get("epochs"):
            return "done", ""
        if cfg["epochs"] > metrics.get("epochs", 0) and (out / "checkpoint.pt").exists():
            return "extend", ""
        return "differs", f"epochs {metrics.get('epochs')} -> {cfg['epochs']}"
    old = load_yaml(out / "config.yaml") if (out / "config.yaml").exists() else {}
    keys = sorted(k for k in set(old) | set(cfg) if k not in HASH_IGNORES and old.get(k) != cfg.get(k))
    return "differs", "keys: " + (", ".join(keys) if keys else "unknown (no config.yaml)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", required=True, help="run folder")
    ap.add_argument("--config", action="append", default=[], help="YAML file of key: value (repeatable)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key (repeatable)")
    ap.add_argument("--no-defaults", action="store_true", help="skip config/runs/<method>/<dataset>.yaml")
    ap.add_argument("--mlflow-experiment", default=None, help="log the run to this MLflow experiment")
    ap.add_argument("--run-name", default=None, help="MLflow run name (default: the run folder's name)")
    ap.add_argument("--check", action="store_true", help="validate the config, print it and exit")
    ap.add_argument("--force", action="store_true",
                    help="retrain a finished run folder whose settings differ (deletes its checkpoint and metrics)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a model hub

    from asge.config import ConfigError

    try:
        cfg = resolve(args.method, args.dataset, args.config, args.set, not args.no_defaults)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(json.dumps(cfg, indent=2, sort_keys=True))
        return 0
    out = Path(args.out)
    if (out / "metrics.json").exists():
        verdict, why = finished_run_verdict(out, cfg)
        if verdict == "done":
            print(f"{out / 'metrics.json'} exists: this run is finished with these settings", file=sys.stderr)
            return 0
        if verdict == "differs" and not args.force:
            print(f"error: {out} holds a finished run with other settings ({why}); train into a new --out folder, "
                  f"or pass --force to retrain this one from scratch (deletes its checkpoint and metrics)",
                  file=sys.stderr)
            return 2
        if verdict == "differs":
            for name in ("metrics.json", "checkpoint.pt"):
                (out / name).unlink(missing_ok=True)

    from asge.checkpoint import CheckpointError
    from asge.data import DataError
    from asge.engine import NonFiniteLoss, Trainer
    from asge.runtime import DeviceError

    callbacks = []
    if args.mlflow_experiment:
        from asge.tracking import MLflowCallback

        callbacks.append(MLflowCallback(experiment=args.mlflow_experiment, run_name=args.run_name or out.name))
    try:
        with run_folder_lock(out):
            Trainer(cfg, out, callbacks).run()
    except RunFolderBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (DataError, CheckpointError, NonFiniteLoss, DeviceError) as e:
        # known failures: one clear message, no traceback; finished files are untouched
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
