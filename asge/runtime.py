"""Device, threads, seeds, determinism and RNG state capture for exact resume."""
from __future__ import annotations

import ctypes
import os
import platform
import random
from typing import Any, Mapping

import numpy as np
import torch


class DeviceError(RuntimeError):
    """The requested device is not available."""


def select_device(cfg: Mapping[str, Any], local_rank: int = 0) -> torch.device:
    """The device named by cfg['device'] (under torchrun: this process's GPU); refuses to run
    on the CPU when a GPU is required."""
    want = cfg["device"]
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {cfg['device']!r} asked for, but CUDA is not available on this machine")
    if want == "cuda":  # one GPU per process: under torchrun rank r takes GPU r, not all GPU 0
        want = f"cuda:{local_rank}"
        if local_rank >= torch.cuda.device_count():
            raise DeviceError(
                f"process {local_rank} (LOCAL_RANK) needs GPU {local_rank}, but this machine shows "
                f"{torch.cuda.device_count()} GPU(s); start at most that many processes per node"
            )
    if cfg["require_gpu"] and not want.startswith("cuda"):
        raise DeviceError(
            "this run requires a GPU (require_gpu: true, set by the workflow's GPU jobs) but none is available; "
            "run on a GPU node, or use the smoke preset / require_gpu=false for a CPU run"
        )
    device = torch.device(want)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def switch_on(cfg: Mapping[str, Any], key: str, device: torch.device | str) -> bool:
    """Whether a device-dependent switch (`amp`, `channels_last`) is on: "auto" means on for
    CUDA and off for CPU; true and false apply on any device."""
    value = cfg[key]
    if value == "auto":
        return torch.device(device).type == "cuda"
    return bool(value)


#: (CUDA, CPU) values of the evaluation sizes set to "auto". A GPU wants big batches; on a CPU
#: a batch whose activations stay in cache is faster: measured on 2 EPYC cores, VGG8 at quarter
#: width, 32x32: ASGE evaluation 542 -> 847 images/s (batch 1000 -> 100), FF 490 -> 930-1040
#: label passes/s (trial_batch 4096 -> 128)
AUTO_SIZES: dict[str, tuple[int, int]] = {"eval_batch_size": (1000, 100), "trial_batch": (4096, 128)}


def auto_size(cfg: Mapping[str, Any], key: str, device: torch.device | str) -> int:
    """The size cfg[key] names, with "auto" resolved for the device (AUTO_SIZES)."""
    value = cfg[key]
    if value != "auto":
        return value
    on_cuda, on_cpu = AUTO_SIZES[key]
    return on_cuda if torch.device(device).type == "cuda" else on_cpu


#: glibc malloc settings for CPU runs (mallopt parameter number, value): serve allocations up to
#: 32 MiB from the heap (M_MMAP_THRESHOLD) and keep up to 256 MiB of freed heap (M_TRIM_THRESHOLD).
#: With glibc's adaptive defaults a small net's activations of a few MB keep going back to the
#: OS and faulting in again: FF's MNIST net trains 1.16x faster with these (docs/benchmarks.md,
#: "CPU allocator"). Results are unchanged: where a tensor lives changes no value.
GLIBC_MALLOPT: dict[str, tuple[int, int]] = {"M_MMAP_THRESHOLD": (-3, 32 << 20), "M_TRIM_THRESHOLD": (-1, 256 << 20)}
_allocator = "default"  # what tune_cpu_allocator last did, for hardware_info


def tune_cpu_allocator() -> str:
    """Apply GLIBC_MALLOPT to this process; returns what the allocator now is (for the metrics)."""
    global _allocator
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _allocator = "default (not glibc)"
        return _allocator
    libc = ctypes.CDLL("libc.so.6")
    refused = [name for name, (param, value) in GLIBC_MALLOPT.items() if libc.mallopt(param, value) != 1]
    _allocator = (f"glibc, mallopt refused {refused}" if refused
                  else "glibc, mmap threshold 32 MiB, trim threshold 256 MiB")
    return _allocator


def setup_runtime(cfg: Mapping[str, Any], device: torch.device) -> None:
    """Threads, seeds, the CPU allocator and the determinism switch, before the model is built."""
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    if device.type == "cpu":
        tune_cpu_allocator()
    seed_everything(cfg["seed"])
    if cfg["deterministic"]:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """All global RNG states, as tensors/ints only, so weights_only loading accepts them."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": torch.tensor([*np.random.get_state()[1].tolist(), np.random.get_state()[2]], dtype=torch.int64),
        "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
    }
    if torch.cuda.is_available():
        # this process's GPU only: a checkpoint then resumes on any number of visible GPUs
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy"].numpy()
    np.random.set_state(("MT19937", keys[:-1].astype(np.uint32), int(keys[-1]), 0, 0.0))
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), None))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if isinstance(cuda, (list, tuple)):  # checkpoints that saved every visible GPU's state
            cuda = cuda[0]
        torch.cuda.set_rng_state(cuda)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.machine()} ({os.cpu_count()} cores)"


def hardware_info(device: torch.device) -> dict[str, str]:
    """Names of the hardware and library versions, for metrics and tracking tags."""
    import torchvision

    info = {
        "device": str(device),
        "cpu": _cpu_name(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "threads": str(torch.get_num_threads()),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["cpu_allocator"] = _allocator
    return info
