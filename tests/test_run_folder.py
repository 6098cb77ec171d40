"""The run folder's guards: finished runs are never silently kept or overwritten, one process per
folder, files readable by colleagues; bad config input stops with the suite's ConfigError."""
from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time

import pandas as pd
import pytest

from asge.atomic import write_text
from asge.config import ConfigError, load_yaml
from asge.runconfig import RUNTIME_ENV, request_of, resolve, write_request
from asge.runfolder import RunFolder
from asge.train import main
from tests.fakedata import write_mnist

TINY = ["channels=[8, 16]", "pool_layers=[1, 2]", "val_size=100", "batch_size=64", "eval_batch_size=200",
        "threads=1", "epochs=1", "lr=0.01", "warmup_epochs=0", "data_mirrors=[]", "offline=true"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_mnist(tmp_path_factory.mktemp("data"), n_train=600)


def train(data_root, out, *extra, force=False):
    args = ["--method", "asge", "--dataset", "mnist", "--out", str(out)]
    for s in (*TINY, f"data_root={data_root}", *extra):
        args += ["--set", s]
    return main(args + (["--force"] if force else []))


def test_finished_folder_same_settings_more_epochs_and_changed_settings(data_root, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="asge")
    out = tmp_path / "run"
    assert train(data_root, out) == 0
    first = (out / "metrics.json").read_text()
    assert train(data_root, out) == 0                      # same settings: finished, nothing retrained
    assert (out / "metrics.json").read_text() == first
    assert train(data_root, out, "epochs=2") == 0          # more epochs: resumes from the checkpoint
    hist = pd.read_csv(out / "history.csv")
    assert sorted(set(hist.epoch)) == [1, 2]
    assert "resuming" in caplog.text
    capsys.readouterr()
    rc = train(data_root, out, "epochs=2", "lr=0.02")      # other settings: refused, result kept
    err = capsys.readouterr().err
    assert rc == 2 and "other settings" in err and "lr" in err and "--force" in err
    assert pd.read_csv(out / "history.csv").epoch.max() == 2
    assert train(data_root, out, "epochs=2", "lr=0.02", force=True) == 0
    assert load_yaml(out / "config.yaml")["lr"] == 0.02


def request_file(data_root, path, *extra):
    """A request file as the workflow writes it: resolved, without the host keys."""
    cfg = resolve("asge", "mnist", overrides=[*TINY, f"data_root={data_root}", *extra])
    write_request(path, request_of(cfg))
    assert "data_root" not in load_yaml(path) and "threads" not in load_yaml(path)
    return path


def test_request_file_trains_with_runtime_keys_from_the_environment(data_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    req = request_file(data_root, tmp_path / "request.yaml")
    monkeypatch.setenv(RUNTIME_ENV, f'{{"data_root": "{data_root}", "data_mirrors": [], "offline": true}}')
    assert main(["--request", str(req), "--out", str(out), "--set", "threads=1"]) == 0
    cfg = load_yaml(out / "config.yaml")
    assert cfg["data_root"] == str(data_root) and cfg["threads"] == 1 and cfg["channels"] == [8, 16]
    # the workflow's way: the request inline as JSON, saved in the run folder
    inline = tmp_path / "inline"
    assert main(["--request", json.dumps(load_yaml(req)), "--out", str(inline), "--set", "threads=1"]) == 0
    assert load_yaml(inline / "request.yaml") == load_yaml(req)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (out, inline))
    assert a["config_hash"] == b["config_hash"] and a["val_acc_per_readout"] == b["val_acc_per_readout"]
    # with --request, settings that change the result belong in the request, not on the command line
    assert main(["--request", str(req), "--out", str(tmp_path / "other"), "--set", "lr=0.5"]) == 2
    assert "only runtime keys" in capsys.readouterr().err


def test_stale_checkpoint_is_refused_unless_forced(data_root, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="asge")
    out = tmp_path / "run"
    assert train(data_root, out, "epochs=2") == 0
    (out / "metrics.json").unlink()  # as after a killed run (or Snakemake removing the outputs)
    capsys.readouterr()
    assert train(data_root, out, "epochs=2", "lr=0.02") == 2  # another run's checkpoint: kept, refused
    err = capsys.readouterr().err
    assert "unfinished run with other settings" in err and "lr" in err and (out / "checkpoint.pt").exists()
    assert train(data_root, out, "epochs=2", "lr=0.02", force=True) == 0  # the workflow's way: retrain
    assert "removing the stale checkpoint" in caplog.text and "resuming" not in caplog.text
    assert load_yaml(out / "config.yaml")["lr"] == 0.02


def test_corrupt_checkpoint_is_never_deleted(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert train(data_root, out, force=True) == 1
    assert "corrupt" in capsys.readouterr().err and (out / "checkpoint.pt").read_bytes() == b"not a checkpoint"


def test_a_second_process_on_the_same_folder_is_refused(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    with RunFolder(out).lock():  # as if another training process held the folder
        assert train(data_root, out) == 2
    assert "another process is training" in capsys.readouterr().err
    assert not (out / "metrics.json").exists()


def test_a_workflow_job_waits_for_an_orphan_and_puts_back_what_snakemake_deleted(data_root, tmp_path, monkeypatch,
                                                                                  capsys):
    """After `snakemake --unlock` a rerun job can start beside an orphaned one of the same folder;
    Snakemake has deleted the job's outputs first. The job waits for the orphan, then finds the
    run finished and writes the config back, so no finished folder lacks its config.yaml."""
    out = tmp_path / "run"
    assert train(data_root, out) == 0  # what the orphan will have finished
    (out / "config.yaml").unlink()
    monkeypatch.setenv("ASGE_WAIT_FOR_LOCK", "1")  # as the workflow sets for its jobs
    release, held = threading.Event(), threading.Event()

    def orphan():
        with RunFolder(out).lock():
            held.set()
            release.wait(30)

    thread = threading.Thread(target=orphan)
    thread.start()
    held.wait(30)
    threading.Timer(1.0, release.set).start()
    started = time.monotonic()
    assert train(data_root, out) == 0
    assert time.monotonic() - started >= 0.9  # it waited instead of failing
    thread.join()
    assert load_yaml(out / "config.yaml")["method"] == "asge"
    assert "finished with these settings" in capsys.readouterr().err


def test_written_files_are_readable_by_group_and_world(data_root, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        assert train(data_root, out) == 0
        write_text(tmp_path / "plain.txt", "x")
    finally:
        os.umask(old)
    for p in [out / "metrics.json", out / "history.csv", out / "config.yaml", out / "diagnostics.pt",
              out / "checkpoint.pt", tmp_path / "plain.txt"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nchannels: [8, 16\nepochs: 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML at line \d+"):
        load_yaml(bad)


@pytest.mark.parametrize("item, words", [
    ("channels=[8, 16", "not valid YAML"),
    ("device=tpu", "'device'"),
    ("lr=.inf", "not a finite number"),
    ("lr=.nan", "not a finite number"),
])
def test_bad_overrides_stop_with_a_config_error(item, words):
    with pytest.raises(ConfigError, match=words):
        resolve("asge", "mnist", overrides=[item])


def test_check_refuses_non_finite_lr(capsys):
    assert main(["--method", "bp", "--dataset", "mnist", "--out", "unused", "--check", "--set", "lr=.inf"]) == 2
    assert "finite" in capsys.readouterr().err


def test_configuration_reference_is_current():
    """The unknown-key error points to docs/configuration.md: it must exist and match the code."""
    from pathlib import Path

    from asge.configdoc import render

    page = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
    assert page.read_text() == render(), "regenerate: python -m asge.configdoc > docs/configuration.md"
    with pytest.raises(ConfigError, match="docs/configuration.md"):
        resolve("asge", "mnist", overrides=["lrate=0.1"])


def test_a_corrupt_run_file_is_named_with_its_fix(data_root, tmp_path, capsys):
    """Issue #28, item 1: a truncated metrics.json in a finished folder stops the training
    command (also with --force) with one line that names the file and the fix, no traceback,
    and nothing in the folder changes; a broken config.yaml is named the same way by its reader
    (the tables and figures read it)."""
    from asge.runfolder import RunFileCorrupt, read_config, read_metrics

    out = tmp_path / "run"
    assert train(data_root, out) == 0
    (out / "metrics.json").write_text('{"method": "asge", "test_ac')  # truncated
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for force in (False, True):
        assert train(data_root, out, force=force) == 2
        err = capsys.readouterr().err
        assert f"{out / 'metrics.json'} cannot be read (not valid JSON" in err and "git checkout --" in err, err
        assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    with pytest.raises(RunFileCorrupt, match="metrics.json cannot be read"):
        read_metrics(out)
    (out / "config.yaml").write_text("channels: [8, 16\nlr: 0.01\n")
    with pytest.raises(RunFileCorrupt, match=r"config.yaml cannot be read \(not valid YAML: .*line"):
        read_config(out)


def test_start_is_one_decision_with_the_checkpoint_read_once(data_root, tmp_path, monkeypatch):
    """RunFolder.start answers fresh / resume / done / refused, computing the digest once and
    loading checkpoint.pt once (the engine resumes from that copy, it does not load it again)."""
    import torch

    from asge import runfolder

    out = tmp_path / "run"
    cfg = resolve("asge", "mnist", overrides=[*TINY, f"data_root={data_root}"])
    assert RunFolder(out).start(cfg).kind == "fresh"
    assert train(data_root, out) == 0
    assert RunFolder(out).start(cfg).kind == "done"
    loads, digests, real_load, real_digest = [], [], torch.load, runfolder.result_digest
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    monkeypatch.setattr(runfolder, "result_digest", lambda c: digests.append(1) or real_digest(c))
    longer = {**cfg, "epochs": 2}
    start = RunFolder(out).start(longer)  # only epochs grew: resume from the finished run's checkpoint
    assert start.kind == "resume" and start.checkpoint["epoch"] == 0 and len(loads) == 1 and len(digests) == 1
    other = {**cfg, "lr": 0.02}
    start = RunFolder(out).start(other)
    assert start.kind == "refused" and "lr" in start.why and "--force" in start.why
    (out / "metrics.json").unlink()  # an unfinished run of other settings: its checkpoint is refused too
    start = RunFolder(out).start(other)
    assert start.kind == "refused" and "unfinished run with other settings (keys: lr)" in start.why
    assert (out / "checkpoint.pt").exists()  # a refusal deletes nothing
    assert RunFolder(out).start(other, force=True).kind == "fresh" and not (out / "checkpoint.pt").exists()


def test_history_has_a_declared_schema_and_a_reader_that_names_the_file(data_root, tmp_path):
    from asge.runfolder import HISTORY_COLUMNS, RunFileCorrupt, read_history

    out = tmp_path / "run"
    assert list(read_history(out).columns) == list(HISTORY_COLUMNS)  # no epoch yet: empty, with the schema
    assert train(data_root, out) == 0
    hist = read_history(out)
    assert set(HISTORY_COLUMNS) <= set(hist.columns) and "train_acc" in hist.columns  # ASGE's own column
    assert hist.columns[:3].tolist() == ["epoch", "readout", "train_loss"]
    text = (out / "history.csv").read_text()
    (out / "history.csv").write_text(text.replace("val_acc", "val_accuracy", 1))
    with pytest.raises(RunFileCorrupt, match=r"history\.csv.*lacks the columns \['val_acc'\]"):
        read_history(out)
    with pytest.raises(ValueError, match="lacks"):
        RunFolder(out).write_history([{"epoch": 1, "readout": "layer1"}])


def test_study_and_variant_are_read_from_the_run_folder_itself(tmp_path):
    from asge.runfolder import run_labels, run_name

    m = {"method": "asge", "dataset": "fashionmnist", "seed": 1}
    abl = tmp_path / "runs" / "ablations" / run_name("asge", "fashionmnist", 1, "pool_avg")
    assert abl.name == "asge-fashionmnist-pool_avg-s1"
    assert run_labels(abl, m) == ("ablations", "pool_avg")
    assert run_labels(tmp_path / "runs" / "main" / run_name("asge", "fashionmnist", 1), m) == ("main", "")
    assert run_labels(tmp_path / "my-own-folder", m) == (tmp_path.name, "")  # outside the scheme: no variant
