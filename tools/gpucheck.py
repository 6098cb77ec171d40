"""GPU acceptance check: one command, at most 10 minutes on one GPU, numbers instead of stack traces.

    python -m tools.gpucheck --out results/gpucheck          # one CUDA GPU (refuses to run on a CPU)
    make gpu-check                                           # the same, into results/gpucheck
    python -m tools.gpucheck --out /tmp/gc --allow-cpu        # the same phases at tiny sizes on a CPU

Phases; each runs in its own process under its own time box, so a hung compile or a CUDA
error ends that phase only and the others still report:

  env            GPU, driver, torch, CUDA, cuDNN, CPU
  bench          tools.bench at full-width VGG8, 32x32, batch 256, every method (eager): train and
                 eval img/s, peak CUDA memory, saved activations, ratios to BP
  bench_compile  the same with compile=true; the first step (the compile) is reported apart
  data           finds CIFAR-10 (data_mirrors, e.g. ../shared/data) and builds its decoded cache
  train_asge     ASGE with the paper recipe (config/presets/paper.yaml overrides on top of
  train_bp       config/runs/<method>/cifar10.yaml), for as many epochs as fit the box; prints
                 img/s and validation accuracy per epoch, then ends the run as the engine does
                 (test accuracy, inference memory, metrics.json) on what was trained, and the
                 phase process's peak host memory (RSS; the paper preset's SLURM `mem_mb`)

Writes DIR/summary.md and DIR/summary.json (and DIR/<phase>.json, DIR/<phase>.log, the runs
under DIR/runs/); exits 1 if any phase failed or ran out of time, 2 on a CPU without --allow-cpu.
--allow-cpu: tiny widths and batches, a CPU-friendly compile backend (dynamo tracing, no code
generation) for BP and ASGE only, two training epochs at most; meant for the tests, so that this
script cannot rot (the engine's compile tests cover every method with inductor on a CPU).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tools.gpucheck_report import goal_verdict, summary_markdown

REPO = Path(__file__).resolve().parent.parent
PHASES = ("env", "bench", "bench_compile", "data", "train_asge", "train_bp")
# seconds per phase, process start included; boxes (460 s) + graces + the pipe waits stay under
# the 10-minute promise even if every phase overruns
GPU_BOX = {"env": 20, "bench": 75, "bench_compile": 165, "data": 60, "train_asge": 70, "train_bp": 70}
# --allow-cpu is a smoke test, not a measurement: wide boxes, because a shared CPU can be slow
# (an idle 2-core machine needs 5-25 s per phase, mostly importing torch)
CPU_BOX = {name: 240 for name in PHASES}
GPU_SIZES = {"width": 1.0, "batch": 256, "size": 32, "warmup": 3, "repeats": 10, "compile_backend": "inductor"}
CPU_SIZES = {"width": 0.0625, "batch": 8, "size": 16, "warmup": 1, "repeats": 2, "compile_backend": "eager"}
CPU_TRAIN = ["channels=[8, 8, 16, 16]", "pool_layers=[2, 4]", "subset_per_class=8", "test_subset_per_class=4",
             "val_size=20", "batch_size=20", "eval_batch_size=100", "threads=1"]
GRACE_S = 10  # after a box ends, how long a phase may take to stop before it is killed
PIPE_WAIT_S = 10  # then how long its output pipe may stay open (compile workers)


# --- the phases (run in a child process: python -m tools.gpucheck --phase NAME ...) ----------------
def phase_env(args: argparse.Namespace) -> dict[str, Any]:
    """Names and versions of the hardware and the libraries."""
    import torch

    from asge.runtime import _cpu_name

    env: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                           "cpu": _cpu_name(), "python": sys.version.split()[0], "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                   gpu_count=torch.cuda.device_count(), bf16=torch.cuda.is_bf16_supported())
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            env["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
        except (OSError, subprocess.TimeoutExpired):
            env["driver"] = None
    return env


def phase_bench(args: argparse.Namespace, compile_: bool) -> dict[str, Any]:
    """tools.bench's measurements for every method, eager or compiled."""
    import torch

    from asge.methods import list_methods
    from tools.bench import bench_methods

    device = _device(args)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(1)
    sizes = CPU_SIZES if args.allow_cpu and device.type == "cpu" else GPU_SIZES
    ns = argparse.Namespace(classes=10, **sizes)
    names = ["bp", "asge", *[m for m in list_methods() if m not in ("bp", "asge")]]
    if compile_ and sizes is CPU_SIZES:
        names = ["bp", "asge"]  # dynamo tracing costs seconds per method on a CPU; the goal's pair
    # compiled: the goal's pair first, then one method at a time, each result written as it lands,
    # so that one method's compile error or the box running out keeps what was measured
    groups = [names[:2], *[[m] for m in names[2:]]] if compile_ else [names]
    result: dict[str, Any] = {"sizes": sizes, "device": str(device), "rows": {}, "errors": {}}
    for group in groups:
        specs = [f"{m}:compile=true" if compile_ else m for m in group]
        try:
            if compile_:
                torch._dynamo.reset()  # methods that share a train_step would hit dynamo's per-frame cache limit
            rows = bench_methods(specs, ns, device)
            result["rows"].update({name: rows[spec] for name, spec in zip(group, specs)})
        except Exception as e:  # noqa: BLE001 - recorded per method, and the phase then fails
            result["errors"].update({m: f"{type(e).__name__}: {e}"[:500] for m in group})
            print(f"bench {'/'.join(group)} failed: {type(e).__name__}: {e}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return result


def paper_config(method: str, dataset: str, extra: list[str]) -> dict[str, Any]:
    """The paper preset's run config: config/runs/<method>/<dataset>.yaml, then the preset's
    overrides (all -> method -> dataset -> method/dataset), then `extra` key=value items."""
    import yaml

    from asge.runconfig import resolve

    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text()) or {}
    preset = yaml.safe_load((REPO / "config" / "presets" / "paper.yaml").read_text()) or {}
    over = preset.get("overrides") or {}
    layers = [over.get("all") or {}, (over.get("method") or {}).get(method) or {},
              (over.get("dataset") or {}).get(dataset) or {},
              (over.get("method_dataset") or {}).get(f"{method}/{dataset}") or {}]
    # never download here: a GPU node may have no network, and a stalled download would eat the box
    items = [f"{k}={json.dumps(base[k])}" for k in ("data_root", "data_mirrors") if k in base] + ["offline=true"]
    items += [f"{k}={json.dumps(v)}" for layer in layers for k, v in layer.items()]
    return resolve(method, dataset, overrides=[*items, *extra])


def _train_overrides(args: argparse.Namespace) -> list[str]:
    tiny = CPU_TRAIN if args.allow_cpu and _device(args).type == "cpu" else []
    return [*tiny, f"device={_device(args)}", *args.set]


def phase_data(args: argparse.Namespace) -> dict[str, Any]:
    """Find the data set and build its decoded cache, so that training phases time training."""
    import torch

    from asge.data import build_data

    cfg = paper_config("asge", args.dataset, _train_overrides(args))
    t0 = time.perf_counter()
    data = build_data(cfg, torch.device("cpu"))
    return {"dataset": args.dataset, "seconds": time.perf_counter() - t0, "train": data.train.num_samples,
            "val": data.val.num_samples, "test": data.test.num_samples}


def phase_train(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Train `method` with the paper recipe until the next epoch would overrun the deadline."""
    import logging

    from asge.engine import Trainer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    cfg = paper_config(method, args.dataset, _train_overrides(args))
    out = Path(args.out) / "runs" / f"{method}-{args.dataset}"
    deadline, max_epochs = args.deadline, args.max_epochs

    class TimeUp(BaseException):
        """Stop before the next epoch (a BaseException, which the engine re-raises as it is)."""

    class Boxed(Trainer):
        def _epoch(self, epoch: int) -> None:
            done = len({r["epoch"] for r in self.history})
            if done and done >= max_epochs:
                raise TimeUp("--max-epochs")
            # room for one more epoch and the final test evaluation (half an epoch's wall, generously)
            if done and time.time() + self.epoch_wall * 1.5 > deadline:
                raise TimeUp("time box")
            t0 = time.time()
            super()._epoch(epoch)
            self.epoch_wall = time.time() - t0  # training and validation
            r = [r for r in self.history if r["epoch"] == epoch + 1]
            print(f"{method} epoch {epoch + 1}: {r[0]['images_per_s']:,.0f} img/s, val acc "
                  f"{max(x['val_acc'] for x in r) * 100:.2f} % (best readout), {r[-1]['val_acc'] * 100:.2f} % "
                  f"({r[-1]['readout']}), {self.epoch_wall:.1f} s", flush=True)

    for name in ("checkpoint.pt", "metrics.json"):  # a fresh run each time: numbers from this machine only
        (out / name).unlink(missing_ok=True)
    trainer = Boxed(cfg, out)
    trainer.epoch_wall = 0.0
    try:
        trainer.run()
        stopped = "finished"
    except TimeUp as e:
        stopped = str(e)
    errors: dict[str, str] = {}
    if stopped != "finished" and trainer.history:
        # the engine's end of a run on what was trained: test accuracy per strategy, inference
        # memory (CUDA's branch on a GPU), diagnostics and metrics.json, as a full run does
        trainer.cfg = {**trainer.cfg, "epochs": max(r["epoch"] for r in trainer.history)}
        try:
            trainer._finish()
        except Exception as e:  # noqa: BLE001 - the phase fails, and keeps its per-epoch numbers
            errors["finish"] = f"{type(e).__name__}: {e}"[:500]
            print(f"{method}: the end-of-run evaluation failed: {errors['finish']}", flush=True)
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    epochs = epoch_summaries(trainer.history)
    if not epochs:
        raise RuntimeError(f"not one epoch of {method} fitted in the time box")
    return {"method": method, "dataset": args.dataset, "recipe_epochs": cfg["epochs"], "batch_size": cfg["batch_size"],
            "amp": cfg["amp"], "channels_last": cfg["channels_last"], "stopped": stopped, "epochs": epochs,
            "test_acc": metrics.get("test_acc"), "strategy": metrics.get("primary_strategy"),
            "peak_train_memory_mib": (metrics.get("peak_train_memory_bytes") or math.nan) / 2**20,
            "peak_host_rss_mib": peak_host_rss_mib(), "errors": errors}


def peak_host_rss_mib() -> float:
    """This phase process's peak resident host memory plus its children's (MiB), an upper bound (the
    two peaks need not coincide): what a SLURM job of the paper preset needs from `mem_mb` besides
    the GPU (docs/operating.md, memory table)."""
    import resource

    kib = sum(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return kib / 1024


def epoch_summaries(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per epoch of a run's history rows (one per readout): speed, time, validation accuracy of the
    best and of the last readout, and peak memory."""
    epochs = []
    for e in sorted({r["epoch"] for r in history}):
        rows = [r for r in history if r["epoch"] == e]
        epochs.append({"epoch": e, "images_per_s": rows[0]["images_per_s"], "epoch_time_s": rows[0]["epoch_time_s"],
                       "val_acc_best_readout": max(r["val_acc"] for r in rows), "val_acc_last": rows[-1]["val_acc"],
                       "peak_memory_mib": rows[0]["peak_memory_bytes"] / 2**20})
    return epochs


def _device(args: argparse.Namespace):
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run_phase(args: argparse.Namespace) -> int:
    """Child side: run one phase and write its result to --json."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    name = args.phase
    if name == "env":
        result = phase_env(args)
    elif name in ("bench", "bench_compile"):
        result = phase_bench(args, compile_=name == "bench_compile")
    elif name == "data":
        result = phase_data(args)
    else:
        result = phase_train(args, name.removeprefix("train_"))
    Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 1 if result.get("errors") else 0


# --- the parent: time boxes, console, summary --------------------------------------------------
def _stream(proc: subprocess.Popen, log_path: Path) -> threading.Thread:
    """Copy the child's output to the console and its log file, line by line."""
    def pump() -> None:
        with log_path.open("w") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()  # the parent reads the log for the error line as soon as the child ends
                sys.stdout.write(f"  | {line}")
                sys.stdout.flush()
    t = threading.Thread(target=pump, daemon=True)
    t.start()
    return t


def launch(name: str, box: float, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Run one phase in a child process, killed if it outlives its box (+ grace)."""
    grace = GRACE_S * min(1.0, args.box_scale)
    result_path = out / f"{name}.json"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "tools.gpucheck", "--phase", name, "--json", str(result_path), "--out", str(out),
           "--dataset", args.dataset, "--deadline", str(time.time() + box), "--max-epochs", str(args.max_epochs)]
    cmd += ["--allow-cpu"] if args.allow_cpu else []
    cmd += [x for s in args.set for x in ("--set", s)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    pump = _stream(proc, out / f"{name}.log")
    try:
        rc = proc.wait(timeout=box + grace)
        status = "ok" if rc == 0 and result_path.exists() else "failed"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc, status = None, "timed out"
    # the pipe closes when the child and anything it spawned (compile workers) are gone
    pump.join(timeout=PIPE_WAIT_S)
    rec: dict[str, Any] = {"status": status, "seconds": round(time.time() - t0, 1), "box_s": box, "returncode": rc}
    if result_path.exists():  # a failed or timed-out phase may have written partial results (bench rows)
        try:
            rec["result"] = json.loads(result_path.read_text())
        except json.JSONDecodeError:  # killed mid-write
            pass
    if status != "ok":
        lines = (out / f"{name}.log").read_text(errors="replace").strip().splitlines()
        if status == "timed out":
            rec["error"] = f"no result within {box + grace:.0f} s"
        else:
            rec["error"] = lines[-1] if lines else f"exit status {rc}, no output"
    return rec


def main(argv: list[str] | None = None) -> int:
    """Parent: refuse on a CPU unless --allow-cpu, run every phase in its box, write the summaries."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for summary.md, summary.json, logs and runs")
    ap.add_argument("--allow-cpu", action="store_true", help="run the phases at tiny sizes on a CPU")
    ap.add_argument("--dataset", default="cifar10", help="data set of the data and training phases")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra override for the data and training phases (repeatable)")
    ap.add_argument("--max-epochs", type=int, default=None, help="most epochs per training phase (default: the box decides; "
                    "2 with --allow-cpu)")
    ap.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    ap.add_argument("--box-scale", type=float, default=1.0,
                    help="multiply every time box (e.g. 10 for --allow-cpu on a CPU shared with other jobs)")
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, default=math.inf, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.max_epochs is None:
        args.max_epochs = 2 if args.allow_cpu else 10**6
    if args.phase:
        return run_phase(args)

    import torch

    cpu_mode = not torch.cuda.is_available()
    if cpu_mode and not args.allow_cpu:
        print("tools.gpucheck: no CUDA GPU is visible (torch.cuda.is_available() is False); this check measures a GPU. "
              "Run it on a GPU machine, or pass --allow-cpu to run the same phases at tiny sizes on this CPU "
              "(a smoke test of the script, not a measurement).", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    args.out = str(out)
    boxes = {k: v * args.box_scale for k, v in (CPU_BOX if cpu_mode else GPU_BOX).items()}
    t0 = time.time()
    phases: dict[str, Any] = {}
    for name in args.phases:
        print(f"== {name} (time box {boxes[name]:.0f} s)", flush=True)
        phases[name] = launch(name, boxes[name], args, out)
        rec = phases[name]
        print(f"== {name}: {rec['status']} in {rec['seconds']:.0f} s" + (f" ({rec['error']})" if "error" in rec else ""),
              flush=True)
    summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)), "cpu_mode": cpu_mode,
               "seconds": round(time.time() - t0, 1), "phases": phases, "goal": goal_verdict(phases, cpu_mode)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    text = summary_markdown(summary)
    (out / "summary.md").write_text(text)
    print(text)
    return 0 if all(p["status"] == "ok" for p in phases.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
