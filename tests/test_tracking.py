"""MLflowCallback: what it logs, retries, failure status, resume without duplicates, and
concurrent writers to one SQLite store. Fake histories only (no training): fast."""
from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import pytest

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

from asge.tracking import MLflowCallback, epoch_metrics, init_store, is_transient, retry  # noqa: E402

READOUTS = ("layer1", "layer2", "layer3")


def cfg_of(run="asge", epochs=3, **extra):
    return {"method": run, "dataset": "mnist", "seed": 0, "epochs": epochs, "lr": 1e-3,
            "channels": [8, 8, 16], "pooling": "rms", "alpha": 1.0, **extra}


def rows_of(epoch):
    return [{"epoch": epoch, "readout": r, "train_loss": 1.0 / epoch, "train_acc": 0.1 * epoch + 0.01 * i,
             "val_acc": 0.1 * epoch + 0.02 * i, "pos_acc": 0.5, "epoch_time_s": 1.5, "images_per_s": 100.0 * epoch,
             "lr": 1e-3 / epoch, "peak_memory_bytes": float("nan")} for i, r in enumerate(READOUTS, 1)]


def summary_of(rows):
    return {"epoch_time_s": 1.5, "images_per_s": rows[0]["images_per_s"], "lr": rows[0]["lr"],
            "val_acc_best_readout": max(r["val_acc"] for r in rows), "val_acc_last": rows[-1]["val_acc"]}


def write_run_dir(out: Path, epochs: int, cfg: dict) -> dict:
    """The files a finished run folder holds (history.csv for `epochs` epochs)."""
    out.mkdir(parents=True, exist_ok=True)
    hist = [r for e in range(1, epochs + 1) for r in rows_of(e)]
    with (out / "history.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(hist[0]))
        w.writeheader()
        w.writerows(hist)
    (out / "config.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in cfg.items()))
    metrics = {"method": cfg["method"], "dataset": "mnist", "seed": 0, "epochs": epochs, "test_acc": 0.9,
               "primary_strategy": "fusion", "best_readout": "layer3", "readouts": list(READOUTS),
               "test_acc_per_readout": [0.7, 0.8, 0.85], "params_total": 1234, "params_trainable": 1000,
               "train_time_s": 4.5, "peak_train_memory_bytes": None, "hardware": {"device": "cpu", "threads": "1"},
               "strategies": {"fusion": {"acc": 0.9, "inference_params": 1234, "inference_memory_bytes": 4096},
                              "last": {"acc": 0.85, "inference_params": 1200, "inference_memory_bytes": 4000}},
               "val_acc_per_strategy": {"fusion": 0.88, "last": 0.83}}
    (out / "metrics.json").write_text(json.dumps(metrics))
    return metrics


def run_lifecycle(uri: str, experiment: str, name: str, out: Path, epochs: int = 3, start: int = 0,
                  finish: bool = True, cfg: dict | None = None) -> MLflowCallback:
    cfg = cfg or cfg_of(epochs=epochs)
    cb = MLflowCallback(experiment=experiment, run_name=name, tracking_uri=uri, base_delay=0.05)
    cb.on_start(cfg, out, start)
    for e in range(start + 1, epochs + 1):
        rows = rows_of(e)
        cb.on_epoch(e, rows, summary_of(rows))
    if finish:
        cb.on_success(write_run_dir(out, epochs, cfg), out)
    return cb


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """A SQLite store with MLflow's tables and no experiment (creating the tables takes seconds)."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    init_store(f"sqlite:///{db}", [])
    return db


def new_store(empty_store: Path, tmp_path: Path) -> str:
    """A fresh store in tmp_path with the experiment 'main' (a copy of the empty one)."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    init_store(uri, ["main"])
    return uri


@pytest.fixture()
def store(empty_store, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = new_store(empty_store, tmp_path)
    return uri, MlflowClient(uri)


def runs_named(client, name, experiment="main"):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{name}'")


def steps(client, run_id, key):
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_logs_params_tags_metrics_and_artifacts(store, tmp_path):
    uri, client = store
    cb = run_lifecycle(uri, "main", "asge-mnist-s0", tmp_path / "run")
    (run,) = runs_named(client, "asge-mnist-s0")
    assert run.info.run_id == cb.run_id and run.info.status == "FINISHED"
    assert set(run.data.params) == set(cfg_of())
    assert run.data.params["channels"] == "[8, 8, 16]"
    tags = run.data.tags
    assert (tags["asge.method"], tags["asge.dataset"], tags["asge.seed"]) == ("asge", "mnist", "0")
    assert tags["asge.torch"] and tags["asge.python"] and tags["asge.hw.device"] == "cpu"
    for key in ("val_acc.layer3", "train_acc.layer1", "train_loss.layer2", "pos_acc.layer1", "epoch_time_s",
                "images_per_s", "lr", "val_acc_best_readout", "val_acc_last"):
        assert steps(client, run.info.run_id, key) == [1, 2, 3], key
    assert "peak_memory_bytes" not in run.data.metrics  # NaN on a CPU: not logged
    assert run.data.metrics["test_acc"] == pytest.approx(0.9)
    assert run.data.metrics["test_acc.last"] == pytest.approx(0.85)
    assert run.data.metrics["inference_params.fusion"] == 1234
    assert run.data.metrics["test_acc_readout.layer2"] == pytest.approx(0.8)
    assert run.data.metrics["val_acc_strategy.fusion"] == pytest.approx(0.88)
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "history.csv", "metrics.json", "plots"} <= arts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/curves.png"]
    # artifacts of a SQLite store live beside the database
    assert run.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())


def test_epoch_metrics_names():
    m = epoch_metrics(rows_of(2))[2]
    assert m["val_acc.layer1"] == pytest.approx(0.22) and m["val_acc_best_readout"] == pytest.approx(0.26)
    assert m["images_per_s"] == 200.0 and "images_per_s.layer1" not in m and "peak_memory_bytes" not in m


def test_retry_helper():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert retry(flaky, base_delay=0.001) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):  # not transient: no retry
        retry(lambda: (_ for _ in ()).throw(ValueError("bad param")), base_delay=0.001)
    calls.clear()
    with pytest.raises(RuntimeError, match="locked"):  # transient, but the tries run out
        retry(lambda: calls.append(1) or (_ for _ in ()).throw(RuntimeError("database is locked")),
              attempts=3, base_delay=0.001)
    assert len(calls) == 3
    assert is_transient(RuntimeError("database is locked")) and not is_transient(KeyError("x"))


def test_retries_a_locked_database(store, tmp_path):
    """The store answers 'database is locked' twice per call; every hook still logs everything."""
    from mlflow.exceptions import MlflowException

    uri, client = store
    cb = MLflowCallback("main", "asge-mnist-s0", uri, base_delay=0.001)
    cb.on_start(cfg_of(), tmp_path, 0)
    real = cb.client.log_batch
    failures = {"n": 0}

    def locked_twice(*args, **kwargs):
        if failures["n"] % 3 < 2:
            failures["n"] += 1
            raise MlflowException("(sqlite3.OperationalError) database is locked")
        failures["n"] += 1
        return real(*args, **kwargs)

    cb.client.log_batch = locked_twice
    for e in (1, 2, 3):
        cb.on_epoch(e, rows_of(e), summary_of(rows_of(e)))
    cb.on_success(write_run_dir(tmp_path / "run", 3, cfg_of()), tmp_path / "run")
    assert failures["n"] >= 9  # every batch failed twice first
    (run,) = runs_named(client, "asge-mnist-s0")
    assert run.info.status == "FINISHED"
    assert steps(client, run.info.run_id, "val_acc.layer2") == [1, 2, 3]


def test_failure_marks_run_failed(store, tmp_path):
    uri, client = store
    cb = run_lifecycle(uri, "main", "bp-mnist-s0", tmp_path, epochs=2, finish=False)
    cb.on_failure(RuntimeError("non-finite training loss"), tmp_path)
    (run,) = runs_named(client, "bp-mnist-s0")
    assert run.info.status == "FAILED"
    assert "non-finite" in run.data.tags["asge.error"]


def test_sigterm_marks_run_killed(store, tmp_path):
    from asge.stopping import Terminated

    uri, client = store
    cb = run_lifecycle(uri, "main", "bp-mnist-s0", tmp_path, epochs=2, finish=False)
    cb.on_failure(Terminated("stopped by SIGTERM"), tmp_path)
    (run,) = runs_named(client, "bp-mnist-s0")
    assert run.info.status == "KILLED" and "SIGTERM" in run.data.tags["asge.error"]


def test_resume_continues_the_unfinished_run(store, tmp_path):
    """Crash after epoch 2 (status stays RUNNING), rerun from the checkpoint with more epochs:
    one run, each epoch logged once, the old params kept and the new epochs noted."""
    uri, client = store
    first = run_lifecycle(uri, "main", "asge-mnist-s0", tmp_path, epochs=2, finish=False, cfg=cfg_of(epochs=2))
    second = run_lifecycle(uri, "main", "asge-mnist-s0", tmp_path, epochs=3, start=2, cfg=cfg_of(epochs=3))
    assert second.run_id == first.run_id and second.resumed
    (run,) = runs_named(client, "asge-mnist-s0")
    assert run.info.status == "FINISHED"
    assert steps(client, run.info.run_id, "val_acc.layer1") == [1, 2, 3]
    assert run.data.params["epochs"] == "2" and run.data.tags["asge.resume.epochs"] == "3"
    assert run.data.tags["asge.resumed_at_epoch"] == "2" and run.data.tags["asge.resume_count"] == "1"


def test_resume_after_failure(store, tmp_path):
    uri, client = store
    cb = run_lifecycle(uri, "main", "ff-mnist-s0", tmp_path, epochs=1, finish=False)
    cb.on_failure(KeyboardInterrupt(), tmp_path)
    again = run_lifecycle(uri, "main", "ff-mnist-s0", tmp_path, epochs=3, start=1)
    assert again.run_id == cb.run_id
    (run,) = runs_named(client, "ff-mnist-s0")
    assert run.info.status == "FINISHED" and steps(client, run.info.run_id, "lr") == [1, 2, 3]


def test_fresh_rerun_marks_the_old_run_superseded(store, tmp_path):
    """A rerun from scratch (no checkpoint, or changed settings) starts a new run and marks every
    older run of that name superseded; a finished run is never resumed."""
    uri, client = store
    old = run_lifecycle(uri, "main", "cwc-mnist-s0", tmp_path)
    new = run_lifecycle(uri, "main", "cwc-mnist-s0", tmp_path, cfg=cfg_of(lr=2e-3))
    # a finished run's checkpoint is reused by a rerun (start_epoch = epochs): still a new run
    newest = run_lifecycle(uri, "main", "cwc-mnist-s0", tmp_path, start=3)
    runs = {r.info.run_id: r for r in runs_named(client, "cwc-mnist-s0")}
    assert len(runs) == 3 and len({old.run_id, new.run_id, newest.run_id}) == 3
    assert runs[old.run_id].data.tags["asge.superseded"] == "true"
    assert runs[new.run_id].data.tags["asge.superseded_by"] == newest.run_id
    live = [r for r in runs.values() if r.data.tags.get("asge.superseded") != "true"]
    assert [r.info.run_id for r in live] == [newest.run_id]
    # the newest logged no epoch itself: its history comes from history.csv
    assert steps(client, newest.run_id, "val_acc.layer3") == [1, 2, 3]


def test_lost_epochs_are_reconciled_from_the_rows(store, tmp_path):
    """Epochs 2 and 3 fail to log (the engine swallows the error); on success they are logged
    from the rows the engine passed, without reading history.csv back (none is written here)."""
    from mlflow.exceptions import MlflowException

    uri, client = store
    cb = MLflowCallback("main", "bp-fashionmnist-s0", uri, attempts=1)
    cb.on_start(cfg_of(), tmp_path, 0)
    cb.on_epoch(1, rows_of(1), summary_of(rows_of(1)))
    real = cb.client.log_batch
    cb.client.log_batch = lambda *a, **k: (_ for _ in ()).throw(MlflowException("store gone"))
    for e in (2, 3):
        with pytest.raises(MlflowException):
            cb.on_epoch(e, rows_of(e), summary_of(rows_of(e)))
    cb.client.log_batch = real
    metrics = write_run_dir(tmp_path / "elsewhere", 3, cfg_of())
    cb.on_success(metrics, tmp_path)
    assert not (tmp_path / "history.csv").exists()
    assert steps(client, cb.run_id, "train_loss.layer1") == [1, 2, 3]
    assert [a.path for a in client.list_artifacts(cb.run_id, "plots")] == ["plots/curves.png"]


def test_setup_failure_is_recorded_failed_with_params(store, tmp_path):
    """A run that fails in setup (before on_start) appears FAILED, with params and the error."""
    uri, client = store
    cb = MLflowCallback("main", "asge-cifar10-s0", uri, cfg=cfg_of(dataset="cifar10"))
    cb.on_failure(FileNotFoundError("data/cifar-10-batches-py/data_batch_1 not found"), tmp_path)
    (run,) = runs_named(client, "asge-cifar10-s0")
    assert run.info.status == "FAILED" and run.info.run_id == cb.run_id
    assert run.data.params["dataset"] == "cifar10" and run.data.params["channels"] == "[8, 8, 16]"
    assert "data_batch_1 not found" in run.data.tags["asge.error"]
    assert run.data.tags["asge.failed_in"] == "setup" and "FileNotFoundError" in run.data.tags["mlflow.note.content"]
    assert run.data.tags["asge.method"] == "asge"
    # the next attempt succeeds: a new run, the failed one superseded (not resumed)
    again = run_lifecycle(uri, "main", "asge-cifar10-s0", tmp_path / "run", start=0)
    runs = {r.info.run_id: r for r in runs_named(client, "asge-cifar10-s0")}
    assert again.run_id != cb.run_id and runs[cb.run_id].data.tags["asge.superseded"] == "true"
    assert runs[cb.run_id].info.status == "FAILED" and runs[again.run_id].info.status == "FINISHED"


def test_setup_failure_without_cfg_still_appears(store, tmp_path):
    uri, client = store
    MLflowCallback("main", "ff-mnist-s0", uri).on_failure(RuntimeError("no device"), tmp_path)
    (run,) = runs_named(client, "ff-mnist-s0")
    assert run.info.status == "FAILED" and "no device" in run.data.tags["asge.error"]


@pytest.mark.parametrize("resume", [False, True])
def test_killed_attempts_end_when_the_next_starts(store, tmp_path, resume):
    """Attempts killed mid-run (no hook after on_epoch) stay RUNNING only until the next attempt
    starts: then every other run of the name is KILLED and only the live attempt is RUNNING."""
    uri, client = store
    name = "cwc-mnist-s0"
    first = run_lifecycle(uri, "main", name, tmp_path, epochs=1, finish=False, cfg=cfg_of(epochs=3))
    # an older attempt that somehow stayed RUNNING although superseded (e.g. two killed in a row)
    stale = client.create_run(client.get_experiment_by_name("main").experiment_id, run_name=name,
                              tags={"asge.superseded": "true"})
    write_run_dir(tmp_path, 1, cfg_of(epochs=3))
    live = MLflowCallback("main", name, uri, base_delay=0.05)
    live.on_start(cfg_of(epochs=3), tmp_path, 1 if resume else 0)
    status = {r.info.run_id: r.info.status for r in runs_named(client, name)}
    assert [rid for rid, s in status.items() if s == "RUNNING"] == [live.run_id]
    assert status[stale.info.run_id] == "KILLED"
    assert (live.run_id == first.run_id) == resume
    if not resume:
        assert status[first.run_id] == "KILLED"
    for e in (2,) if resume else (1, 2):
        live.on_epoch(e, rows_of(e), summary_of(rows_of(e)))
    live.on_success(write_run_dir(tmp_path, 2, cfg_of(epochs=3)), tmp_path)
    # a resumed attempt has epoch 1 from the earlier attempt (MLflow run or history.csv)
    assert steps(client, live.run_id, "val_acc.layer1") == [1, 2]


def _worker(uri: str, i: int, out: str) -> None:
    run_lifecycle(uri, "main", f"asge-mnist-s{i}", Path(out) / f"r{i}", epochs=5)


def test_eight_concurrent_writers(empty_store, tmp_path):
    """8 processes log complete runs at once to one SQLite store created just before."""
    uri = new_store(empty_store, tmp_path)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(uri, i, str(tmp_path))) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("main").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"asge-mnist-s{i}" for i in range(8)]
    for r in runs:
        assert r.info.status == "FINISHED"
        for key in ("val_acc.layer1", "val_acc.layer3", "images_per_s"):
            assert steps(client, r.info.run_id, key) == [1, 2, 3, 4, 5]


def test_new_store_without_init(tmp_path):
    """Parallel first writers to a not-yet-existing SQLite file (no init step) all succeed."""
    uri = f"sqlite:///{tmp_path / 'sub' / 'fresh.db'}"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(uri, i, str(tmp_path))) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 3


def test_links_print_each_experiments_runs_table(store, capsys):
    """The README's MLflow step: one runs-table URL per experiment, in the model-training view."""
    from asge.tracking.cli import main

    uri, client = store
    init_store(uri, ["smoke-ablations"])
    assert main(["links", "--uri", uri, "--base", "http://127.0.0.1:5000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    ids = {e.name: e.experiment_id for e in client.search_experiments()}
    assert [line.split()[0] for line in lines] == ["main", "smoke-ablations"]  # not MLflow's Default
    for line in lines:
        name, url = line.split()
        assert url == f"http://127.0.0.1:5000/#/experiments/{ids[name]}?workflowType=machine_learning"
