"""The GPU code paths run on the CPU: bf16 autocast, channels_last and torch.compile train every
registered method for one tiny epoch and land where fp32 lands; compile time is kept out of the
epoch time; the bench's saved-activation count leaves out autocast's weight copies; the GPU
acceptance script (tools.gpucheck) runs end to end with --allow-cpu."""
from __future__ import annotations

import argparse
import json
import math

import pandas as pd
import pytest
import torch

from asge.config import ConfigError, resolve_config
from asge.config import result_digest as config_hash
from asge.engine import Trainer, _split_compile_time
from asge.methods import list_methods, method_class
from asge.runconfig import resolve
from asge.runtime import auto_size, switch_on
from tests.fakedata import write_mnist
from tools import bench

TINY = ["val_size=200", "batch_size=20", "eval_batch_size=200", "deterministic=true", "threads=1", "epochs=1",
        "lr=0.01", "warmup_epochs=0"]
ARCH = {"cwc": ["channels=[10, 20]", "groups=[1, 10]", "pool_layers=[1, 2]", "ilt_windows=null", "sf_lr=null"]}
DEFAULT_ARCH = ["channels=[8, 16]", "pool_layers=[1, 2]"]

# How far a switched-on run may land from the fp32 run after one epoch (60 steps), per readout:
# (test accuracy, absolute; training loss, relative). channels_last and compile compute the same
# float32 math in another order, so they agree closely: within 0.02 on an AVX2 CPU, but CwC-FF's
# channels_last landed 0.04 (8 of 200 images) from fp32 on an AVX-512 Xeon, whose kernels sum in
# another order; 0.06 still fails a broken path (the fp32 runs land above 0.2, chance is 0.1).
# bf16 keeps 8 mantissa bits: after 60 steps of slightly different updates the training loss
# agreed within 2.1 % and test accuracy (200 images) within 0.11 over every method and two seeds,
# while two fp32 seeds differ by up to 0.17; 0.15 and 5 % catch a broken bf16 path (chance-level
# accuracy, diverging loss), not noise.
TOLERANCE = {"channels_last": (0.06, 0.01), "compile": (0.06, 0.01), "amp": (0.15, 0.05)}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_mnist(tmp_path_factory.mktemp("data"), n_train=1400, n_test=200)


def _cfg(data_root, name: str, *extra: str) -> dict:
    return resolve(name, "mnist", overrides=[*TINY, *ARCH.get(name, DEFAULT_ARCH), f"data_root={data_root}",
                                             "data_mirrors=[]", "offline=true", *extra])


class Probe(Trainer):
    """Records, during training, the dtype and layout of what the first conv receives and returns."""

    def _setup(self) -> None:
        super()._setup()
        self.seen: list[tuple[torch.dtype, bool, torch.dtype]] = []
        conv = next(m for m in self.method.modules() if isinstance(m, torch.nn.Conv2d))
        self.first_conv = conv

        def hook(mod, inp, out):
            if mod.training:
                x = inp[0]
                self.seen.append((x.dtype, x.is_contiguous(memory_format=torch.channels_last), out.dtype))
        conv.register_forward_hook(hook)


_FP32: dict[str, tuple[dict, pd.DataFrame]] = {}


def _run(data_root, tmp_path, name: str, *extra: str) -> tuple[dict, pd.DataFrame, Probe]:
    out = tmp_path / f"{name}-{'-'.join(extra) or 'fp32'}"
    trainer = Probe(_cfg(data_root, name, *extra), out)
    metrics = trainer.run()
    return metrics, pd.read_csv(out / "history.csv"), trainer


def _fp32(data_root, tmp_path, name: str) -> tuple[dict, pd.DataFrame]:
    if name not in _FP32:  # one reference run per method for all switches
        metrics, hist, _ = _run(data_root, tmp_path, name, "amp=false", "channels_last=false")
        _FP32[name] = (metrics, hist)
    return _FP32[name]


def _assert_close(name: str, mode: str, ref: tuple[dict, pd.DataFrame], got: tuple[dict, pd.DataFrame]) -> None:
    acc_tol, loss_tol = TOLERANCE[mode]
    (m0, h0), (m1, h1) = ref, got
    for a, b in zip(m0["test_acc_per_readout"], m1["test_acc_per_readout"]):
        assert abs(a - b) <= acc_tol, f"{name} {mode}: test accuracy {b:.3f} vs fp32 {a:.3f} per readout"
    for a, b in zip(h0["train_loss"], h1["train_loss"]):
        assert math.isfinite(b) and abs(a - b) <= loss_tol * abs(a) + 1e-3, f"{name} {mode}: loss {b:.4f} vs {a:.4f}"


@pytest.mark.parametrize("mode", ["amp", "channels_last"])
@pytest.mark.parametrize("name", list_methods())
def test_method_trains_with_gpu_switches_on_cpu(data_root, tmp_path, name, mode):
    ref = _fp32(data_root, tmp_path, name)
    # the fp32 reference must learn something, or "the same accuracy" would say nothing (FF needs
    # hundreds of steps to leave chance, so for FF the loss comparison carries the weight)
    if name != "ff":
        assert max(ref[0]["test_acc_per_readout"]) > 0.2, ref[0]["test_acc_per_readout"]
    other = "channels_last=false" if mode == "amp" else "amp=false"
    metrics, hist, trainer = _run(data_root, tmp_path, name, f"{mode}=true", other)
    x_dtype, x_cl, out_dtype = trainer.seen[0]
    if mode == "amp":  # autocast really ran: the conv computed in bf16 on fp32 inputs and weights
        assert out_dtype == torch.bfloat16 and x_dtype == torch.float32
        assert all(p.dtype == torch.float32 for p in trainer.method.parameters())
    else:  # channels_last reached the weights and the batches
        assert trainer.first_conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert x_cl and out_dtype == torch.float32
    _assert_close(name, mode, ref, (metrics, hist))


@pytest.mark.slow
@pytest.mark.parametrize("name", list_methods())
def test_method_trains_compiled_on_cpu(data_root, tmp_path, name):
    """Inductor on the CPU: minutes per method on a 2-core machine, hence slow (make test-all)."""
    import torch._dynamo
    import torch._inductor.config

    # One process trains one model in the suite; here every method shares a process. Dynamo's
    # per-frame cache limit would otherwise be reached by earlier methods (BP and BP (VGG) share
    # Backprop.train_step), after which it runs the step eagerly and compiles nothing.
    torch._dynamo.reset()
    # Inductor draws random numbers with its own generator; eager's draws make FF's random
    # negatives the same as in the fp32 reference, so that the losses are comparable.
    ref = _fp32(data_root, tmp_path, name)
    with torch._inductor.config.patch(fallback_random=True):
        metrics, hist, _ = _run(data_root, tmp_path, name, "compile=true", "amp=false", "channels_last=false")
    _assert_close(name, "compile", ref, (metrics, hist))
    # the compile is reported apart and kept out of the epoch's time
    assert metrics["compile_time_s"] > 0 and "compile_time_s" in hist.columns
    assert metrics["epoch_time_s_mean"] < metrics["compile_time_s"]


def test_compile_time_is_split_from_epoch_time():
    # 10 steps of 100 images; step 1 compiled: 10.5 s of an 11.4 s epoch
    epoch, comp = _split_compile_time(11.4, 10.5, 1000, 100)
    assert epoch == pytest.approx(1.0) and comp == pytest.approx(10.4)
    assert _split_compile_time(2.0, 0.0, 1000, 0) == (2.0, 0.0)  # nothing compiled this epoch
    epoch, comp = _split_compile_time(3.0, 3.0, 100, 100)  # every step compiled: no steady rate
    assert epoch == 3.0 and math.isnan(comp)


def test_switches_accept_auto_true_false():
    cls = method_class("asge")
    for v in ("auto", True, False):
        cfg = resolve_config("asge", "mnist", [{"amp": v, "channels_last": v}], cls)
        assert cfg["amp"] == v and cfg["channels_last"] == v
    with pytest.raises(ConfigError, match="'amp'"):
        resolve_config("asge", "mnist", [{"amp": "yes"}], cls)
    with pytest.raises(ConfigError, match="'channels_last'"):
        resolve_config("asge", "mnist", [{"channels_last": 1}], cls)
    cfg = resolve_config("asge", "mnist", [], cls)
    assert cfg["amp"] == cfg["channels_last"] == "auto"
    assert switch_on(cfg, "amp", torch.device("cuda")) and not switch_on(cfg, "amp", torch.device("cpu"))
    assert switch_on({**cfg, "amp": True}, "amp", "cpu") and not switch_on({**cfg, "amp": False}, "amp", "cuda")
    # "auto" is what true meant before: checkpoints written then keep their digest and resume
    assert config_hash(cfg) == config_hash({**cfg, "amp": True, "channels_last": True})
    assert config_hash(cfg) != config_hash({**cfg, "amp": False})


def test_evaluation_sizes_take_auto_per_device():
    """auto: big batches on CUDA, cache-sized ones on a CPU; a number applies anywhere; FF's
    "auto" chunking keeps the digest its 4096 had, so earlier checkpoints still resume."""
    ff = resolve_config("ff", "mnist", [], method_class("ff"))
    assert ff["eval_batch_size"] == ff["trial_batch"] == "auto"
    assert (auto_size(ff, "eval_batch_size", "cuda"), auto_size(ff, "eval_batch_size", torch.device("cpu"))) == (1000, 100)
    assert (auto_size(ff, "trial_batch", "cuda:1"), auto_size(ff, "trial_batch", "cpu")) == (4096, 128)
    assert auto_size({**ff, "trial_batch": 250}, "trial_batch", "cuda") == 250
    assert config_hash(ff) == config_hash({**ff, "trial_batch": 4096}) != config_hash({**ff, "trial_batch": 250})
    for key, bad in (("eval_batch_size", 0), ("eval_batch_size", "big"), ("trial_batch", True)):
        with pytest.raises(ConfigError, match=repr(key)):
            resolve_config("ff", "mnist", [{key: bad}], method_class("ff"))


@pytest.mark.parametrize("module", [torch.nn.Linear(1024, 1024, bias=False), torch.nn.Conv2d(64, 256, 3, padding=1)])
def test_saved_activations_exclude_autocast_weight_copies(module, monkeypatch):
    """Only the input is an activation here: bf16 halves it; the weight's bf16 copy, which
    autocast makes and the op saves, is not counted (it would dwarf the input). The input
    requires grad, so its bf16 copy looks like the weight's (a cast of a leaf): it still counts."""
    x = torch.randn(4, 1024) if isinstance(module, torch.nn.Linear) else torch.randn(2, 64, 8, 8)
    x.requires_grad_(True)

    def saved(amp: bool) -> int:
        counter = bench.SavedActivations(module)
        with counter.hooks(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            module(x).sum().backward()
        return counter.total

    x_bytes = x.numel() * x.element_size()
    assert saved(False) == x_bytes
    assert saved(True) == x_bytes // 2  # the fp32 count scaled by the dtype size
    weight_copy = module.weight.numel() * 2
    monkeypatch.setattr(bench, "is_weight_cast", lambda t: False)
    assert saved(True) == x_bytes // 2 + weight_copy  # what the count would be without the rule


def test_bench_counts_bf16_activations_for_every_method():
    args = argparse.Namespace(width=0.0625, batch=4, size=16, classes=10, warmup=0, repeats=1)
    for name in list_methods():
        fp32 = bench.Candidate(f"{name}:amp=false", args, torch.device("cpu")).memory()
        bf16 = bench.Candidate(f"{name}:amp=true", args, torch.device("cpu")).memory()
        # activations that autocast computes in bf16 take half the bytes; goodness, losses and
        # norms stay float32, so the total lands between half and all of the fp32 count
        assert 0.4 * fp32["saved_total_mib"] < bf16["saved_total_mib"] < fp32["saved_total_mib"], name


def test_gpucheck_refuses_a_cpu_without_allow_cpu(tmp_path, capsys):
    from tools import gpucheck

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert gpucheck.main(["--out", str(tmp_path / "gc")]) == 2
    assert "--allow-cpu" in capsys.readouterr().err
    assert not (tmp_path / "gc").exists()


def test_gpucheck_allow_cpu_end_to_end(tmp_path):
    """Every phase as on a GPU, at tiny sizes, on the fake MNIST data: exit 0 and both summaries.
    The boxes are wall-clock; widened 10x so that a CPU shared with training jobs cannot time
    a phase out (the box itself is tested below)."""
    from tools import gpucheck

    root = write_mnist(tmp_path / "data", n_train=300, n_test=100)
    out = tmp_path / "gc"
    rc = gpucheck.main(["--out", str(out), "--allow-cpu", "--box-scale", "10", "--dataset", "mnist",
                        "--set", f"data_root={root}", "--set", "data_mirrors=[]", "--set", "offline=true"])
    summary = json.loads((out / "summary.json").read_text())
    assert rc == 0, {k: (v["status"], v.get("returncode"), v.get("error"), (out / f"{k}.log").read_text()[-2000:])
                     for k, v in summary["phases"].items() if v["status"] != "ok"}
    assert list(summary["phases"]) == list(gpucheck.PHASES)
    assert all(p["status"] == "ok" and p["seconds"] <= p["box_s"] + gpucheck.GRACE_S for p in summary["phases"].values())
    assert all(p["box_s"] == 10 * gpucheck.CPU_BOX[k] for k, p in summary["phases"].items())
    ph = summary["phases"]
    assert ph["env"]["result"]["torch"] == torch.__version__
    rows = ph["bench"]["result"]["rows"]
    assert set(rows) == set(list_methods())
    assert all(r["train_img_s"] > 0 and r["eval_img_s"] > 0 and r["saved_peak_mib"] > 0 for r in rows.values())
    assert set(ph["bench_compile"]["result"]["rows"]) == {"bp", "asge"}
    for m in ("asge", "bp"):
        epochs = ph[f"train_{m}"]["result"]["epochs"]
        assert 1 <= len(epochs) <= 2 and all(e["images_per_s"] > 0 and 0 <= e["val_acc_last"] <= 1 for e in epochs)
        # the engine's end of a run (test evaluation, inference memory, metrics.json) ran on what was trained
        assert 0 <= ph[f"train_{m}"]["result"]["test_acc"] <= 1
        assert ph[f"train_{m}"]["result"]["peak_host_rss_mib"] > 300  # torch alone takes more than this
        assert (out / "runs" / f"{m}-mnist" / "metrics.json").exists()
    md = (out / "summary.md").read_text()
    assert "All phases passed." in md and "| asge |" in md and "Training bp on mnist" in md
    assert "Test accuracy after" in md and "peak host memory (RSS" in md


def test_gpucheck_reports_a_failed_phase_and_exits_nonzero(tmp_path):
    from tools import gpucheck

    out = tmp_path / "gc"
    rc = gpucheck.main(["--out", str(out), "--allow-cpu", "--dataset", "mnist", "--phases", "data",
                        "--set", f"data_root={tmp_path / 'nothing'}", "--set", "data_mirrors=[]", "--set", "offline=true"])
    assert rc == 1
    data = json.loads((out / "summary.json").read_text())["phases"]["data"]
    assert data["status"] == "failed" and "mnist" in data["error"].lower()
    assert "Failed phases: data (failed" in (out / "summary.md").read_text()


def test_gpucheck_kills_a_phase_that_outlives_its_box(tmp_path):
    from tools import gpucheck

    out = tmp_path / "gc"
    rc = gpucheck.main(["--out", str(out), "--allow-cpu", "--phases", "env", "--box-scale", "0.001"])
    assert rc == 1
    env = json.loads((out / "summary.json").read_text())["phases"]["env"]
    assert env["status"] == "timed out" and env["returncode"] is None and "no result within" in env["error"]
    assert env["seconds"] < 60  # killed at its (scaled) box of 0.24 s, not left running for 240 s


def test_gpucheck_fits_ten_minutes_even_if_every_phase_overruns():
    from tools import gpucheck

    worst = sum(gpucheck.GPU_BOX.values()) + len(gpucheck.PHASES) * (gpucheck.GRACE_S + gpucheck.PIPE_WAIT_S)
    assert set(gpucheck.GPU_BOX) == set(gpucheck.PHASES) and worst <= 600


def test_gpucheck_compile_bench_keeps_the_rows_of_methods_that_compiled(tmp_path, monkeypatch):
    from tools import gpucheck

    def fake_bench(specs, ns, device):
        if any(s.startswith("ff:") for s in specs):
            raise RuntimeError("inductor failed on ff")
        return {s: {"train_img_s": 100.0, "eval_img_s": 200.0} for s in specs}

    monkeypatch.setattr(bench, "bench_methods", fake_bench)
    path = tmp_path / "bench_compile.json"
    args = argparse.Namespace(phase="bench_compile", json=str(path), allow_cpu=False)
    assert gpucheck.run_phase(args) == 1  # the phase fails ...
    result = json.loads(path.read_text())
    assert "ff" in result["errors"] and "inductor failed" in result["errors"]["ff"]
    # ... but keeps every other method's row, the goal's pair (compiled together) first
    assert list(result["rows"])[:2] == ["bp", "asge"]
    assert set(result["rows"]) == set(list_methods()) - {"ff"}
