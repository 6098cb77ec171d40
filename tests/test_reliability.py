"""Failures done for real: SIGKILL mid-epoch then resume; known-bad inputs stop cleanly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd

from tests.fakedata import write_mnist

ARGS = ["--method", "asge", "--dataset", "mnist", "--set", "channels=[16, 32]", "--set", "pool_layers=[1, 2]",
        "--set", "val_size=200", "--set", "batch_size=50", "--set", "epochs=3", "--set", "deterministic=true",
        "--set", "threads=1", "--set", "data_mirrors=[]", "--set", "lr=0.01"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def train(root, out):
    return [sys.executable, "-m", "asge.train", *ARGS, "--set", f"data_root={root}", "--out", str(out)]


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    root = write_mnist(tmp_path / "data", n_train=3200, n_test=200)
    ref = subprocess.run(train(root, tmp_path / "ref"), env=ENV, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(train(root, out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.3)  # into epoch 2, whose checkpoint is written only at its end
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists(), "the run finished before it could be killed"
    done_epochs = set(pd.read_csv(out / "history.csv").epoch)
    assert done_epochs < {1, 2, 3}

    again = subprocess.run(train(root, out), env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stderr
    a = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    for key in ("test_acc", "val_acc_per_readout", "test_acc_per_readout", "best_readout"):
        assert a[key] == b[key], key
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "ref" / "history.csv").drop(columns=["epoch_time_s", "images_per_s"]),
        pd.read_csv(out / "history.csv").drop(columns=["epoch_time_s", "images_per_s"]))
    # no temporary files left behind by the atomic writers
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_sigterm_stops_with_one_line_and_the_rerun_resumes(tmp_path):
    """What SLURM sends at a time limit: exit 143 with one line that says what is kept, no traceback."""
    root = write_mnist(tmp_path / "data", n_train=3200, n_test=200)
    out = tmp_path / "termed"
    proc = subprocess.Popen(train(root, out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err and "stopped by SIGTERM" in err and "rerun the same command to resume" in err
    assert not (out / "metrics.json").exists()
    again = subprocess.run(train(root, out), env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "resuming" in again.stderr, again.stderr[-2000:]
    assert sorted(set(pd.read_csv(out / "history.csv").epoch)) == [1, 2, 3]


def test_missing_data_offline_is_one_clear_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "asge.train", "--method", "asge", "--dataset", "mnist",
                          "--set", f"data_root={tmp_path}", "--set", "data_mirrors=[]", "--set", "offline=true",
                          "--out", str(tmp_path / "run")], env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "mnist" in res.stderr.lower() and str(tmp_path) in res.stderr
    assert not (tmp_path / "run").exists()  # no folder left behind holding only its .lock


def test_atomic_write_never_leaves_a_partial_file(tmp_path):
    from asge.atomic import atomic_write, write_json

    target = tmp_path / "metrics.json"
    write_json(target, {"test_acc": 0.5})

    def crash_half_way(p):
        p.write_text('{"test_acc": 0.9')  # half a file, then the process "dies"
        raise KeyboardInterrupt

    try:
        atomic_write(target, crash_half_way)
    except KeyboardInterrupt:
        pass
    assert json.loads(target.read_text()) == {"test_acc": 0.5}  # the finished file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # and no temporary is left
