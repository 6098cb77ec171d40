"""The shared engine on tiny real-format MNIST data: run files, resume, NaN, bad checkpoints."""
from __future__ import annotations

import json
import logging
import platform
import shutil

import pandas as pd
import pytest
import torch

from asge.engine import CHECKPOINT, Callback, NonFiniteLoss, Trainer
from asge.runfolder import CheckpointError, RunFolderMismatch
from asge.train import main, resolve
from tests.fakedata import write_mnist

TINY = ["channels=[8, 16]", "pool_layers=[1, 2]", "val_size=100", "batch_size=64", "eval_batch_size=200",
        "deterministic=true", "threads=1", "epochs=3", "lr=0.01", "warmup_epochs=0"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_mnist(tmp_path_factory.mktemp("data"), n_train=2000)


def cfg_for(data_root, *extra, method="asge"):
    return resolve(method, "mnist", overrides=[*TINY, f"data_root={data_root}", "data_mirrors=[]", "offline=true", *extra])


def test_run_folder_is_complete(data_root, tmp_path, caplog):
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="asge"):
        metrics = Trainer(cfg_for(data_root), out).run()
    # the final evaluation is a step of its own in the log, not a silence after the last epoch
    assert [m for m in caplog.messages if m.startswith("final evaluation")][-1].startswith("final evaluation done in")
    for name in ("config.yaml", "history.csv", "metrics.json", CHECKPOINT, "diagnostics.pt"):
        assert (out / name).is_file(), name
    hist = pd.read_csv(out / "history.csv")
    assert set(hist.epoch) == {1, 2, 3} and set(hist.readout) == {"layer1", "layer2"}
    assert {"train_loss", "train_acc", "val_acc", "epoch_time_s", "images_per_s"} <= set(hist.columns)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["test_acc"] == metrics["test_acc"] == metrics["strategies"]["fusion"]["acc"]
    assert set(metrics["strategies"]) == {"fusion", "last", "best"}
    # the banded toy data is easy: three epochs must learn it (chance is 10 %)
    assert metrics["test_acc"] > 0.5
    assert metrics["strategies"]["best"]["inference_params"] <= metrics["strategies"]["last"]["inference_params"]
    # every strategy also on the validation split, where recipe choices are made (issue #26); Last
    # Pred there is the last layer's final validation accuracy of history.csv
    assert set(on_disk["val_acc_per_strategy"]) == {"fusion", "last", "best"}
    last_val = hist[(hist.epoch == 3) & (hist.readout == "layer2")]["val_acc"].item()
    assert on_disk["val_acc_per_strategy"]["last"] == pytest.approx(last_val)
    assert on_disk["numerics"] == {"amp_bf16": False, "channels_last": False}  # what a CPU run used


class CrashAfterFirstEpoch(Trainer):
    def _epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt("simulated crash")
        super()._epoch(epoch)


def test_resume_gives_the_same_metrics(data_root, tmp_path):
    full = Trainer(cfg_for(data_root), tmp_path / "full").run()
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        CrashAfterFirstEpoch(cfg_for(data_root), part).run()
    assert (part / CHECKPOINT).exists() and not (part / "metrics.json").exists()
    (part / "history.csv").unlink()  # as if killed between the checkpoint and history.csv

    class SeesHistory(Callback):  # what a callback (MLflow) finds in the folder when the resumed run starts
        def on_start(self, cfg, out_dir, start_epoch):
            self.epochs = sorted(set(pd.read_csv(out_dir / "history.csv").epoch))

    seen = SeesHistory()
    resumed = Trainer(cfg_for(data_root), part, [seen]).run()
    assert seen.epochs == [1]
    assert resumed["test_acc_per_readout"] == full["test_acc_per_readout"]
    assert resumed["val_acc_per_readout"] == full["val_acc_per_readout"]
    a = pd.read_csv(tmp_path / "full" / "history.csv")
    b = pd.read_csv(part / "history.csv")
    pd.testing.assert_frame_equal(a.drop(columns=["epoch_time_s", "images_per_s"]),
                                  b.drop(columns=["epoch_time_s", "images_per_s"]))


def test_nan_loss_stops_without_metrics(data_root, tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLoss, match="non-finite training loss.*no checkpoint exists yet"):
        Trainer(cfg_for(data_root, "lr=1e30", "optimizer=sgd", "log_every=1", "epochs=1"), out).run()
    assert not (out / "metrics.json").exists()


def test_corrupt_and_foreign_checkpoints_are_refused(data_root, tmp_path):
    out = tmp_path / "run"
    Trainer(cfg_for(data_root, "epochs=1"), out).run()
    (out / "metrics.json").unlink()
    ckpt = out / CHECKPOINT
    good = ckpt.read_bytes()
    # from another configuration (other lr): refused, not loaded silently
    with pytest.raises(RunFolderMismatch, match="unfinished run with other settings .keys: lr"):
        Trainer(cfg_for(data_root, "lr=0.001"), out).run()
    # truncated file
    ckpt.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        Trainer(cfg_for(data_root), out).run()
    assert not (out / "metrics.json").exists()


def test_cli_rejects_bad_config_before_running(tmp_path, capsys):
    assert main(["--method", "asge", "--dataset", "mnist", "--out", str(tmp_path / "r"), "--set", "epochs=-1"]) == 2
    assert "'epochs'" in capsys.readouterr().err
    assert main(["--method", "nope", "--dataset", "mnist", "--out", str(tmp_path / "r")]) == 2
    assert "registered methods" in capsys.readouterr().err
    assert main(["--method", "asge", "--dataset", "svhn", "--out", str(tmp_path / "r")]) == 2
    assert "svhn" in capsys.readouterr().err
    assert main(["--method", "asge", "--dataset", "mnist", "--out", str(tmp_path / "r"), "--set", "lr=fast"]) == 2
    assert "'lr'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_finished_run_is_not_redone(data_root, tmp_path):
    out = tmp_path / "run"
    args = ["--method", "asge", "--dataset", "mnist", "--out", str(out)] + sum(
        (["--set", s] for s in [*TINY, f"data_root={data_root}", "data_mirrors=[]", "epochs=1"]), [])
    assert main(args) == 0
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "metrics.json").stat().st_mtime_ns == stamp
    shutil.rmtree(out)


def test_engine_calls_after_step_once_per_step_after_the_update(data_root, tmp_path, monkeypatch):
    """The hook sees the batch after the optimiser step (CwC's BatchNorm refresh relies on it)."""
    from baselines.cwc import CwCFF
    calls = []
    orig_step = CwCFF.after_step

    def spy(self, x, y, epoch):
        calls.append((epoch, x.shape[0], self.layers[0].conv.weight.detach().clone()))
        orig_step(self, x, y, epoch)

    monkeypatch.setattr(CwCFF, "after_step", spy)
    cfg = cfg_for(data_root, "channels=[10, 20]", "groups=[1, 10]", "pool_layers=[1, 2]", "epochs=1",
                  "ilt_windows=null", "sf_lr=null", method="cwc")
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.run()
    steps = len(trainer.data.train)
    assert len(calls) == steps and all(epoch == 0 for epoch, _, _ in calls)
    # the weights seen by consecutive calls differ: each call comes after an update
    assert not torch.equal(calls[0][2], calls[1][2])


def test_each_process_takes_its_own_gpu_and_too_few_gpus_is_a_clear_error(monkeypatch):
    # the CUDA branch of device selection, on a CPU: torch.cuda pretends to see one GPU
    from asge.runtime import DeviceError, select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    cfg = {"device": "auto", "require_gpu": False}
    assert select_device(cfg, local_rank=0) == torch.device("cuda:0")
    assert select_device({**cfg, "device": "cuda"}, local_rank=0) == torch.device("cuda:0")
    with pytest.raises(DeviceError, match="needs GPU 1.*1 GPU"):
        select_device({**cfg, "device": "cuda"}, local_rank=1)
    assert select_device({**cfg, "device": "cpu"}, local_rank=1) == torch.device("cpu")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator settings are glibc's")
def test_cpu_allocator_settings_are_applied_and_recorded():
    from asge.runtime import hardware_info, tune_cpu_allocator

    state = tune_cpu_allocator()
    assert state == "glibc, mmap threshold 32 MiB, trim threshold 256 MiB"  # glibc accepted both
    assert hardware_info(torch.device("cpu"))["cpu_allocator"] == state
