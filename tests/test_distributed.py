"""Data-parallel training: 2 gloo processes on CPU equal one process at the same global batch,
and rank 0 alone builds the data cache while the other rank waits, then reads it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from torchvision.io import encode_png

from tests.fakedata import class_images

ARGS = ["--method", "asge", "--dataset", "mnist", "--set", "channels=[8, 16]", "--set", "pool_layers=[1, 2]",
        "--set", "val_size=100", "--set", "batch_size=100", "--set", "epochs=2", "--set", "deterministic=true",
        "--set", "threads=1", "--set", "data_mirrors=[]", "--set", "lr=0.01", "--set", "warmup_epochs=0",
        "--set", "device=cpu"]  # gloo on CPU processes; on a 1-GPU machine rank 1 would find no cuda:1

# The log lines of asge.data.sources.read_folder: one per decode-and-write of the cache, one per read of it.
BUILT = "caching in"
LOADED = "loaded decoded images from cache"


def write_mnist_png(root: Path, n_train: int, n_test: int) -> Path:
    """MNIST as an image folder <root>/mnist-png/{train,test}/<class>/*.png: the layout that the
    data layer decodes once into its cache (the idx files are read directly, with no cache)."""
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        x, y = class_images(n, 10, 28, seed)
        for i, (img, label) in enumerate(zip(x, y)):
            d = root / "mnist-png" / split / str(int(label))
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{i:05d}.png").write_bytes(encode_png(torch.from_numpy(img)[None]).numpy().tobytes())
    return root


def run(cmd, env) -> str:
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout + res.stderr


def test_two_gloo_ranks_match_one_process_and_build_the_cache_once(tmp_path):
    # 1,100 training images - 100 for validation = 1,000 = 10 full global batches of 100
    root = write_mnist_png(tmp_path / "data", n_train=1100, n_test=200)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    args = ARGS + ["--set", f"data_root={root}"]
    # separate caches, so that the DDP run starts cold and has to build its own
    single_log = run([sys.executable, "-m", "asge.train", *args, "--set", f"cache_dir={tmp_path / 'cache1'}",
                      "--out", str(tmp_path / "single")], env)
    ddp_log = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   "-m", "asge.train", *args, "--set", f"cache_dir={tmp_path / 'cache2'}",
                   "--out", str(tmp_path / "ddp")], env)
    assert single_log.count(BUILT) == 1
    # one build (rank 0) and one read of it (rank 1, after the barrier): without the barrier
    # both ranks find no cache and each decodes and writes it
    assert ddp_log.count(BUILT) == 1, ddp_log[-3000:]
    assert ddp_log.count(LOADED) == 1, ddp_log[-3000:]
    assert len(list((tmp_path / "cache2").glob("mnist-*.pt"))) == 1
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    a = pd.read_csv(tmp_path / "single" / "history.csv")
    b = pd.read_csv(tmp_path / "ddp" / "history.csv")
    # the same global batches, gradients averaged over ranks: equal up to float summation order
    # (loss within 1e-4 relative; accuracies within 0.011, about one image of 100 validation images)
    pd.testing.assert_series_equal(a.train_loss, b.train_loss, rtol=1e-4)
    pd.testing.assert_series_equal(a.val_acc, b.val_acc, atol=0.011)
    assert abs(single["test_acc"] - ddp["test_acc"]) <= 0.011
