"""Data-parallel training: 2 gloo processes on CPU equal one process at the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd

from tests.fakedata import write_mnist

ARGS = ["--method", "asge", "--dataset", "mnist", "--set", "channels=[8, 16]", "--set", "pool_layers=[1, 2]",
        "--set", "val_size=100", "--set", "batch_size=100", "--set", "epochs=2", "--set", "deterministic=true",
        "--set", "threads=1", "--set", "data_mirrors=[]", "--set", "lr=0.01", "--set", "warmup_epochs=0"]


def run(cmd, env):
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def test_two_gloo_ranks_match_one_process(tmp_path):
    # 1,100 training images - 100 for validation = 1,000 = 10 full global batches of 100
    root = write_mnist(tmp_path / "data", n_train=1100, n_test=200)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    args = ARGS + ["--set", f"data_root={root}"]
    run([sys.executable, "-m", "asge.train", *args, "--out", str(tmp_path / "single")], env)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "asge.train", *args, "--out", str(tmp_path / "ddp")], env)
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    a = pd.read_csv(tmp_path / "single" / "history.csv")
    b = pd.read_csv(tmp_path / "ddp" / "history.csv")
    # the same global batches, gradients averaged over ranks: equal up to float summation order
    pd.testing.assert_series_equal(a.train_loss, b.train_loss, rtol=1e-4)
    pd.testing.assert_series_equal(a.val_acc, b.val_acc, atol=0.011)
    assert abs(single["test_acc"] - ddp["test_acc"]) <= 0.011
