"""The GPU check's report: the summary in Markdown and the verdict on the throughput goal."""
from __future__ import annotations

import math
from typing import Any


def _f(v: Any, fmt: str = ",.0f") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def summary_markdown(s: dict[str, Any]) -> str:
    """The human-readable summary: environment, bench table, training per epoch, verdict."""
    ph = s["phases"]
    env = ph.get("env", {}).get("result", {})
    lines = [f"# GPU check ({'CPU, --allow-cpu, tiny sizes' if s['cpu_mode'] else 'GPU'}), {s['date']}", "",
             f"Total {s['seconds']:.0f} s. " + ", ".join(f"{k}: {v['status']} ({v['seconds']:.0f}/{v['box_s']:.0f} s)"
                                                       for k, v in ph.items()), "",
             "| GPU | driver | torch | CUDA | cuDNN | CPU |", "|---|---|---|---|---|---|",
             f"| {env.get('gpu', '–')} | {env.get('driver') or '–'} | {env.get('torch', '–')} | {env.get('cuda') or '–'} "
             f"| {env.get('cudnn') or '–'} | {env.get('cpu', '–')} |", ""]
    eager, comp = (ph.get(k, {}).get("result", {}) for k in ("bench", "bench_compile"))
    if eager or comp:
        sz = (eager or comp)["sizes"]
        lines += [f"Bench: VGG8 width {sz['width']}, {sz['size']}x{sz['size']}, batch {sz['batch']}, median of "
                  f"{sz['repeats']} repeats after {sz['warmup']} warm-up steps; compile backend {sz['compile_backend']}.",
                  "", "| method | train img/s | ×BP | eval img/s | ×BP | peak CUDA MiB | saved act. peak MiB | "
                  "compiled train img/s | ×BP | compile (first step) s |", "|---|---|---|---|---|---|---|---|---|---|"]
        e_rows, c_rows = eager.get("rows", {}), comp.get("rows", {})
        e_bp, c_bp = e_rows.get("bp", {}), c_rows.get("bp", {})

        def ratio(r: dict, bp: dict, k: str) -> str:
            return _f(r[k] / bp[k], ".2f") if r.get(k) and bp.get(k) else "–"
        for m in dict.fromkeys([*e_rows, *c_rows]):
            e, c = e_rows.get(m, {}), c_rows.get(m, {})
            lines.append(f"| {m} | {_f(e.get('train_img_s'))} | {ratio(e, e_bp, 'train_img_s')} | "
                         f"{_f(e.get('eval_img_s'))} | {ratio(e, e_bp, 'eval_img_s')} | {_f(e.get('peak_cuda_mib'))} | "
                         f"{_f(e.get('saved_peak_mib'), '.1f')} | {_f(c.get('train_img_s'))} | "
                         f"{ratio(c, c_bp, 'train_img_s')} | {_f(c.get('first_step_s'), '.1f')} |")
        lines.append("")
    for m in ("asge", "bp"):
        r = ph.get(f"train_{m}", {}).get("result")
        if not r:
            continue
        lines += [f"Training {m} on {r['dataset']}, paper recipe (batch {r['batch_size']}, schedule for "
                  f"{r['recipe_epochs']} epochs, amp {r['amp']}, channels_last {r['channels_last']}); stopped: "
                  f"{r['stopped']}.", "", "| epoch | img/s | epoch s | val acc best readout % | val acc last % |",
                  "|---|---|---|---|---|"]
        lines += [f"| {e['epoch']} | {_f(e['images_per_s'])} | {_f(e['epoch_time_s'], '.1f')} | "
                  f"{e['val_acc_best_readout'] * 100:.2f} | {e['val_acc_last'] * 100:.2f} |" for e in r["epochs"]]
        if r.get("test_acc") is not None:
            lines += ["", f"Test accuracy after {len(r['epochs'])} epoch(s) ({r['strategy']}): {r['test_acc'] * 100:.2f} %; "
                      f"peak training memory less the resident data: {_f(r['peak_train_memory_mib'])} MiB; "
                      f"peak host memory (RSS, the process and its children): {_f(r.get('peak_host_rss_mib'))} MiB."]
        lines.append("")
    lines += [f"Goal (docs/benchmarks.md): {s['goal']}", ""]
    failed = {k: v for k, v in ph.items() if v["status"] != "ok"}
    why = [f"{k} ({v['status']}: {v.get('error', '')})" for k, v in failed.items()]
    lines += [f"Failed phases: {', '.join(why)}" if failed else "All phases passed."]
    return "\n".join(lines) + "\n"


def goal_verdict(phases: dict[str, Any], cpu_mode: bool) -> str:
    """ASGE >= 30k img/s and <= 1.0x BP's step time (best of eager and compiled), on a GPU."""
    best = {}
    for k in ("bench", "bench_compile"):
        for m, r in phases.get(k, {}).get("result", {}).get("rows", {}).items():
            best[m] = max(best.get(m, 0.0), r.get("train_img_s") or 0.0)
    if "asge" not in best or "bp" not in best:
        return "not measured"
    text = (f"ASGE {best['asge']:,.0f} img/s (target >= 30,000), step time {best['bp'] / best['asge']:.2f}x BP's "
            f"(target <= 1.0)")
    if cpu_mode:
        return text + "; informational only on a CPU"
    met = best["asge"] >= 30_000 and best["bp"] / best["asge"] <= 1.0
    return text + ("; met" if met else "; NOT met")
