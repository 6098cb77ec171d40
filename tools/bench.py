"""Side-by-side cost of every method on one backbone, plus the data pipeline's throughput.

    python -m tools.bench                                   # VGG8 full width, 32x32, batch 128
    python -m tools.bench --width 0.25 --repeats 5 --methods bp asge asge:norm_affine=false ff cwc
    python -m tools.bench --device cuda --markdown docs/bench-h100.md
    python -m tools.bench --cpu-allocator default     # glibc's own malloc settings (training tunes them)
    python -m tools.bench --size 28 --in-channels 1 --batch 16 --threads 2 --methods \
        "ff:channels=[32,64,128],kernel_size=5,pool_layers=[1,2,3],channels_last=true" \
        --reference first                                # FF's MNIST net alone

Per method: training images/s and evaluation images/s (median over timed repeats after
warm-up; FF's evaluation includes its N label passes), the activation memory saved for
backward per training step (counted exactly with saved_tensors_hooks: the peak of live
saved activations and their total, identical on any hardware), peak CUDA memory, and the
ratio of each to the reference (BP unless --reference says otherwise). CwC-FF runs its own
architecture (it cannot use the VGG8 widths).
"""
from __future__ import annotations

import argparse
import re
import statistics
import time
import types
import weakref
from typing import Any

import torch

from asge.config import resolve_config
from asge.engine import autocast_for, build_optimizer
from asge.methods import create_method, list_methods, method_class
from asge.runtime import switch_on, tune_cpu_allocator


class _Box:
    """Holder of one saved tensor; its collection marks the tensor freed by autograd."""

    __slots__ = ("t", "__weakref__")

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t


def is_weight_cast(t: torch.Tensor) -> bool:
    """Whether `t` (or the tensor it views) is a dtype/layout copy of a trainable parameter,
    as autocast makes of every weight (a bf16 copy, cached for the autocast region)."""
    base = t._base if t._base is not None else t
    fn = base.grad_fn
    if fn is None or type(fn).__name__ != "ToCopyBackward0":
        return False
    # AccumulateGrad is where a leaf's gradient lands; only a Parameter leaf is a weight (a leaf
    # input that requires grad is cast the same way but is an activation)
    return any(isinstance(getattr(nxt, "variable", None), torch.nn.Parameter) for nxt, _ in fn.next_functions)


class SavedActivations:
    """Counts the bytes autograd saves for backward; the peak of what is alive at once.

    Parameters, the model's buffers (pass `model`) and autocast's copies of parameters are
    excluded: they are weights, not activations, so a bf16 run counts only its activations.
    A tensor saved twice counts once while alive. The peak shows whether per-layer backward
    frees each layer's graph.
    """

    def __init__(self, model: torch.nn.Module | None = None) -> None:
        self.live: dict[int, int] = {}
        self.peak = 0
        self.total = 0
        tensors = [*model.parameters(), *model.buffers()] if model is not None else []
        self.weights = {w.untyped_storage().data_ptr() for w in tensors}

    def _pack(self, t: torch.Tensor) -> Any:
        if isinstance(t, torch.nn.Parameter) or (not t.is_floating_point() and t.numel() < 1024):
            return t
        if t.untyped_storage().data_ptr() in self.weights or is_weight_cast(t):
            return t
        key, size = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
        box = _Box(t)
        if key not in self.live:
            self.live[key] = size
            self.total += size
            self.peak = max(self.peak, sum(self.live.values()))
            weakref.finalize(box, self.live.pop, key, None)
        return box

    @staticmethod
    def _unpack(x: Any) -> torch.Tensor:
        return x.t if isinstance(x, _Box) else x

    def hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        return torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """'asge' or 'asge:norm_affine=false,alpha=0.5,channels=[32,64]' -> (method, overrides)."""
    from asge.config import parse_override

    name, _, rest = spec.partition(":")
    # commas inside [...] belong to a list value
    return name, dict(parse_override(kv) for kv in re.split(r",(?![^\[]*\])", rest) if kv)


class Candidate:
    """One method (or variant) built for the benchmark, with its step and evaluation."""

    def __init__(self, spec: str, args: argparse.Namespace, device: torch.device) -> None:
        name, extra = parse_spec(spec)
        c = getattr(args, "in_channels", 3)
        info = types.SimpleNamespace(name="cifar10", num_classes=args.classes, in_channels=c, image_size=args.size,
                                     mean=(0.5,) * c, std=(0.25,) * c)
        over: dict[str, Any] = {"batch_size": args.batch, "device": str(device)}
        if "width" in method_class(name).keys:
            over["width"] = args.width
        cfg = resolve_config(name, "cifar10", [over, extra], method_class(name))
        torch.manual_seed(0)
        self.model = create_method(name, cfg, info).to(device)
        channels_last = switch_on(cfg, "channels_last", device)  # as the engine: auto = CUDA only
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = build_optimizer(self.model.param_groups(), cfg)
        self.amp = autocast_for(device, cfg)
        # the training step as the engine runs it (compiled when `compile` is on); evaluation
        # and the saved-activation count stay eager, as in the engine
        backend = getattr(args, "compile_backend", "inductor")
        self.train_step = torch.compile(self.model.train_step, backend=backend) if cfg["compile"] else self.model.train_step
        self.x = torch.randn(args.batch, c, args.size, args.size, device=device)
        self.y = torch.randint(0, args.classes, (args.batch,), device=device)
        if channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.device = device
        self.cfg = cfg

    def step(self) -> None:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        with self.amp:
            self.train_step(self.x, self.y, 0)
        self.opt.step()

    def evaluate(self) -> None:
        self.model.eval()
        with torch.no_grad(), self.amp:
            scores = self.model.layer_scores(self.x)
            self.model.predict(scores, self.model.strategies[0], len(scores) - 1)

    def memory(self) -> dict[str, float]:
        counter = SavedActivations(self.model)
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        with counter.hooks(), self.amp:
            self.model.train_step(self.x, self.y, 0)
        peak_cuda = float("nan")
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.step()
            _sync(self.device)
            peak_cuda = torch.cuda.max_memory_allocated(self.device) / 2**20
        return {"saved_peak_mib": counter.peak / 2**20, "saved_total_mib": counter.total / 2**20,
                "peak_cuda_mib": peak_cuda, "params_m": sum(p.numel() for p in self.model.parameters()) / 1e6}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def bench_methods(specs: list[str], args: argparse.Namespace, device: torch.device) -> dict[str, dict[str, float]]:
    """Median images/s per method; repeats are interleaved across methods so that a load
    change on a shared machine affects every method alike (the ratios stay meaningful)."""
    cands = {s: Candidate(s, args, device) for s in specs}
    # the first step alone: with `compile` it is the compile time, kept out of the timed repeats
    first = {s: _timed(c.step, device) for s, c in cands.items()}
    rows = {s: {**c.memory(), "first_step_s": first[s]} for s, c in cands.items()}
    for kind in ("step", "evaluate"):
        times: dict[str, list[float]] = {s: [] for s in specs}
        for r in range(args.warmup + args.repeats):
            for s, c in cands.items():
                t = _timed(getattr(c, kind), device)
                if r >= args.warmup:
                    times[s].append(t)
        for s in specs:
            rows[s]["train_img_s" if kind == "step" else "eval_img_s"] = args.batch / statistics.median(times[s])
    return rows


def bench_pipeline(args: argparse.Namespace, device: torch.device) -> float:
    """Images/s of the on-device loader (uint8 -> normalised float, crop + flip) on CIFAR-sized data."""
    from asge.data import dataset_info
    from asge.data.device_loader import DeviceLoader

    n = 10_000
    images = torch.randint(0, 256, (n, 3, args.size, args.size), dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,))
    loader = DeviceLoader(images, labels, info=dataset_info("cifar10"), device=device, batch_size=args.batch,
                          shuffle=True, crop_padding=4, hflip=True, seed=0, channels_last=device.type == "cuda")

    def one_pass() -> None:
        for xb, _ in loader:
            pass

    one_pass()  # warm-up
    return n / statistics.median([_timed(one_pass, device) for _ in range(args.repeats)])


def results_markdown(rows: dict[str, dict], pipe: float, hw: str, args: argparse.Namespace) -> str:
    """The benchmark's table (Markdown) with its settings line and the data pipeline's speed."""
    bp = rows[args.reference]
    lines = [
        f"Backbone VGG8 width {args.width} (unless a variant sets channels), "
        f"{args.in_channels}x{args.size}x{args.size}, batch {args.batch}, {args.classes} classes, "
        f"{hw}, torch {torch.__version__}; median of {args.repeats} repeats after {args.warmup} warm-up steps.",
        "",
        f"Ratios (×ref) are to {args.reference}.",
        "",
        "| method | params (M) | train img/s | ×ref | eval img/s | ×ref | saved act. peak (MiB) | ×ref "
        "| saved act. total (MiB) | peak CUDA (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in rows.items():
        lines.append(
            f"| {n} | {r['params_m']:.2f} | {r['train_img_s']:.0f} | {r['train_img_s'] / bp['train_img_s']:.2f} | "
            f"{r['eval_img_s']:.0f} | {r['eval_img_s'] / bp['eval_img_s']:.2f} | {r['saved_peak_mib']:.1f} | "
            f"{r['saved_peak_mib'] / bp['saved_peak_mib']:.2f} | {r['saved_total_mib']:.1f} | {r['peak_cuda_mib']:.0f} |")
    lines += ["", f"Data pipeline (uint8 on {torch.device(args.device).type}, normalise + crop + flip): {pipe:,.0f} img/s "
                  f"({pipe / max(r['train_img_s'] for r in rows.values()):.0f}× the fastest training step)."]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=None,
                    help="default: all registered; a variant is method:key=value,key=value")
    ap.add_argument("--width", type=float, default=1.0, help="VGG8 width multiplier (1.0 = 128..512 channels)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--reference", default="bp",
                    help="the method (or variant) the ratio columns divide by, benchmarked even when not in "
                         "--methods; 'first': the first of --methods (then nothing else runs beside them)")
    ap.add_argument("--in-channels", type=int, default=3, help="input channels (1: the MNIST nets)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend of variants with compile=true (aot_eager: tracing only, fast to build)")
    ap.add_argument("--cpu-allocator", choices=("tuned", "default"), default="tuned",
                    help="on a CPU: the malloc settings training uses (asge.runtime.GLIBC_MALLOPT) or glibc's defaults")
    ap.add_argument("--markdown", default=None, help="also write the table to this Markdown file")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    allocator = "malloc defaults"
    if device.type == "cpu" and args.cpu_allocator == "tuned":
        allocator = tune_cpu_allocator()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    names = args.methods or list_methods()
    if args.reference == "first":
        args.reference = names[0]
    if args.reference not in names:
        names = [args.reference, *names]
    rows = bench_methods(names, args, device)
    pipe = bench_pipeline(args, device)
    hw = (torch.cuda.get_device_name(device) if device.type == "cuda"
          else f"CPU, {torch.get_num_threads()} threads, allocator: {allocator}")
    text = results_markdown(rows, pipe, hw, args)
    print(text)
    if args.markdown:
        from asge.atomic import write_text

        write_text(args.markdown, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
