"""Tables T1-T6 and T8-T11 from results/.../tables/runs.csv (Markdown, LaTeX, CSV and HTML each):
T1 main comparison (measured mean ± std and bootstrap 95 % CI over seeds beside the
paper-reported value), T2 prediction strategies, T3 pooling and T4 α ablation, T5 ImageNet
beside both paper versions, T6 training cost, T8 every ablation variant beside BP, T9 ASGE
against each baseline paired by seed (tables_paired.py), T10 budget and T11 convergence
(tables_budget.py); T3, T4 and T8 are built in tables_ablation.py. Every measured number comes from a run
of this suite, named with its seeds, epochs and hardware; a cell without runs says "not run".

One function per table (`BUILDERS`; the list of tables with titles and labels: table_registry.py)
turns the runs into a `Table`: the tidy numbers (one row per table row, raw values: the CSV),
their display strings and the notes; `write` formats it.
`Table` and `Context` live in wfutil (shared with tables_paired), the statistics in stats.
Method names come from the method registry, data set names from the data set catalog.
"""

import json
import math
from typing import Any, Callable

import pandas as pd

from runs_schema import read_runs
from stats import bootstrap_mean_ci, t_interval
from table_registry import TABLES
from tables_ablation import ablation, t8_variants
from tables_budget import t10_budget, t11_convergence
from tables_paired import t9_paired
from tables_width import t12_width
from wfutil import (
    DASH,
    STRATEGY_ORDER,
    Context,
    Table,
    ci_text,
    dataset_keys,
    dataset_name,
    epochs_of,
    finite,
    hardware_of,
    human_int,
    ints,
    join_unique,
    mean_std,
    method_name,
    mib,
    pair,
    scale_note,
    seeds_of,
    setup_logging,
    signed,
    write_table,
)


def comparability(g: pd.DataFrame, run_file: dict[str, Any]) -> list[str]:
    """Why the runs `g` are not comparable to a paper-reported number ([] = comparable): data
    subsets, fewer epochs or other widths than the run file config/runs/<method>/<dataset>.yaml,
    which holds the paper-scale setting."""
    reasons = []
    for col, what in (("cfg_subset_per_class", "training subset"), ("cfg_test_subset_per_class", "test subset")):
        vals = [v for v in g[col].dropna() if finite(v) and float(v) > 0]
        if vals:
            reasons.append(f"{what} ({join_unique(int(v) for v in vals)} per class)")
    if finite(run_file.get("epochs")) and (g["epochs"] < int(run_file["epochs"])).any():
        reasons.append(f"{epochs_of(g)} epochs (paper-scale: {int(run_file['epochs'])})")
    if run_file.get("channels"):
        want = json.dumps(list(run_file["channels"]))
        got = {json.dumps(json.loads(v)) for v in g["cfg_channels"].dropna() if isinstance(v, str)}
        if got and got != {want}:
            reasons.append(f"channels {join_unique(sorted(got))} (paper-scale: {want})")
    if any(finite(w) and float(w) != 1.0 for w in g["cfg_width"].dropna()):
        reasons.append(f"width ×{join_unique(g['cfg_width'].dropna())}")
    return reasons


# T1 -------------------------------------------------------------------------------------
def t1_main(ctx: Context) -> Table:
    """T1: each method's primary strategy per data set, measured beside reported."""
    methods = list(ctx.cfg["methods"]) + [m for m in ctx.reported["method"].unique() if m not in ctx.cfg["methods"]]
    datasets = list(dict.fromkeys(list(ctx.cfg["datasets"]) + [d for d in dataset_keys() if d in
                                                             set(ctx.reported["dataset"])]))
    show, data, not_comparable = [], [], []
    for m in methods:
        for d in datasets:
            g = pair(ctx.primary, m, d)
            rep = ctx.reported[(ctx.reported["method"] == m) & (ctx.reported["dataset"] == d)
                                & (ctx.reported["metric"] == "top1")]
            if rep.empty and g.empty and m not in ctx.cfg["methods"]:
                continue
            if d == "imagenet" and len(rep) > 1:  # both ASGE versions: the newest here, both in T5
                rep = rep.sort_values("version").tail(1)
            mean, std, n, text = mean_std(g["test_acc"]) if len(g) else (math.nan, math.nan, 0, ctx.not_run(m, d))
            # rounded so that last-bit noise of the resample means cannot change the CSV
            low, high = (round(v, 6) for v in bootstrap_mean_ci(100 * g["test_acc"])) if n else (math.nan,) * 2
            t_low, t_high = (round(v, 6) for v in t_interval(100 * g["test_acc"])) if n else (math.nan,) * 2
            params = g.drop_duplicates("run")["params_total"].mean() if n else math.nan
            r_val = float(rep["value"].iloc[0]) if len(rep) else math.nan
            r_src = str(rep["source"].iloc[0]) if len(rep) else DASH
            reasons = comparability(g, ctx.run_files.get(f"{m}/{d}", {})) if n else []
            diff = mean - r_val if n and finite(r_val) and not reasons else math.nan
            if n and finite(r_val) and reasons:
                not_comparable.append(f"{method_name(m)} on {dataset_name(d)}: {'; '.join(reasons)}")
            strategy = join_unique(g["strategy"])
            show.append({"Method": method_name(m), "Data set": dataset_name(d), "Strategy": strategy,
                         "Measured here (mean ± std, n)": text,
                         "95 % CI (t)": f"{ci_text(t_low, t_high)} (n={n})" if finite(t_low) else DASH,
                         "95 % CI (bootstrap)": ci_text(low, high),
                         "Params": human_int(params), "Seeds": seeds_of(g), "Epochs": epochs_of(g),
                         "Hardware": hardware_of(g),
                         "Reported": f"{r_val:.2f}" if finite(r_val) else DASH, "Source": r_src,
                         "Δ (measured − reported)": f"{DASH} †" if reasons and finite(r_val) else signed(diff)})
            data.append({"method": m, "dataset": d, "strategy": strategy if n else "", "status": "measured" if n else text,
                         "measured_mean": mean, "measured_std": std, "ci95_t_low": t_low, "ci95_t_high": t_high,
                         "ci95_low": low, "ci95_high": high, "n": n, "params": params,
                         "seeds": seeds_of(g) if n else "",
                         "epochs": epochs_of(g) if n else "", "hardware": hardware_of(g) if n else "",
                         "reported": r_val, "reported_source": r_src if len(rep) else "", "difference": diff,
                         "comparable": not reasons if n else "", "not_comparable_because": "; ".join(reasons)})
    notes = ctx.measured_note(ctx.primary)
    notes.append("95 % CI (t), the primary interval: mean ± t(0.975, n−1)·s/√n over seeds, with n beside it; "
                 "'–' where n = 1: one seed gives no interval. With 2–3 seeds it is wide, as it should be.")
    notes.append("95 % CI (bootstrap), for comparison only: percentile bootstrap of the mean (10,000 resamples with "
                 "a fixed seed, so a rebuild gives the same numbers). With 2–3 seeds it can only recombine those "
                 "values (n = 2: [min, max]) and covers the mean far less often than 95 %.")
    notes.append("Params: the trained model's parameters, every head included (params_total of metrics.json, mean "
                 "over its runs): the methods' nets differ in size (e.g. CwC-FF's CFSE net against the VGG8 of ASGE, "
                 "FF and BP).")
    notes.append("Reported: the value published in the named source (not measured here). ImageNet: the v2 "
                 "number; T5 lists both paper versions.")
    notes.append("Primary strategy per method: ASGE and FF Fusion Pred, CwC-FF GA, BP the classifier head.")
    notes.append("Δ is given only where the measured setting is the paper-scale one (full data, the epochs and "
                 "widths of config/runs/<method>/<dataset>.yaml).")
    if not_comparable:
        notes.append("† No Δ: the measured setting differs from the reported one — " + " | ".join(not_comparable)
                     + ".")
    return Table(pd.DataFrame(data), pd.DataFrame(show), notes)

# T2 -------------------------------------------------------------------------------------
def t2_strategies(ctx: Context) -> Table:
    """T2: every prediction strategy's accuracy and inference cost."""
    show, data = [], []
    for m in ctx.cfg["methods"]:
        for d in ctx.cfg["datasets"]:
            g = pair(ctx.main, m, d)
            if g.empty:
                show.append({"Method": method_name(m), "Data set": dataset_name(d), "Strategy": DASH,
                             "Test acc. (mean ± std, n)": ctx.not_run(m, d), "Inference params": DASH,
                             "Conv blocks run": DASH, "Heads": DASH, "Inference memory (MiB)": DASH,
                             "Memory measure": DASH})
                data.append({"method": m, "dataset": d, "strategy": "", "status": ctx.not_run(m, d)})
                continue
            order = {s: i for i, s in enumerate(STRATEGY_ORDER)}
            for s in sorted(g["strategy"].unique(), key=lambda s: (order.get(s, len(order)), s)):
                gs = g[g["strategy"] == s]
                mean, std, n, text = mean_std(gs["test_acc"])
                params, mem = gs["inference_params"].mean(), gs["inference_memory_bytes"].mean()
                show.append({"Method": method_name(m), "Data set": dataset_name(d), "Strategy": s,
                             "Test acc. (mean ± std, n)": text, "Inference params": human_int(params),
                             "Conv blocks run": ints(gs, "inference_blocks"), "Heads": ints(gs, "inference_heads"),
                             "Inference memory (MiB)": mib(mem),
                             "Memory measure": join_unique(gs["inference_memory_method"])})
                data.append({"method": m, "dataset": d, "strategy": s, "status": "measured", "acc_mean": mean,
                             "acc_std": std, "n": n, "inference_params_mean": params,
                             "inference_blocks": ints(gs, "inference_blocks"),
                             "inference_heads": ints(gs, "inference_heads"),
                             "readouts_computed": ints(gs, "inference_layers"),
                             "inference_memory_bytes_mean": mem,
                             "memory_method": join_unique(gs["inference_memory_method"]),
                             "epochs": epochs_of(gs), "hardware": hardware_of(gs)})
    notes = ctx.measured_note(ctx.main)
    notes.append("Inference params: parameters and fixed projection values a strategy needs (Best Pred drops "
                 "the layers after the validation-selected one). Conv blocks run: the backbone blocks a "
                 "prediction needs; Heads: the readout heads it uses (BP its linear head; CwC-FF none for GA, "
                 "which reads the last block's class goodness, the softmax head for Sf; ASGE one fixed projection "
                 "per layer read, Fusion all from fusion_from on; FF none, it compares goodness over N label "
                 "passes). Inference memory of one test batch: CUDA "
                 "peak on a GPU ('cuda_max_allocated'); on a CPU parameters plus the largest single-op working "
                 "set ('tensor_account').")
    return Table(pd.DataFrame(data), pd.DataFrame(show), notes)

# T5 -------------------------------------------------------------------------------------
def t5_imagenet(ctx: Context) -> Table:
    """T5: ImageNet top-1 / top-5 beside both paper versions."""
    rep = ctx.reported[ctx.reported["dataset"] == "imagenet"]
    versions = sorted(v for v in rep["version"].dropna().unique())

    def reported(m: str, metric: str, version: str) -> float:
        r = rep[(rep["method"] == m) & (rep["metric"] == metric) & (rep["version"] == version)]
        return float(r["value"].iloc[0]) if len(r) else math.nan

    show, data = [], []
    for m in ctx.cfg["methods"]:
        g = pair(ctx.primary, m, "imagenet")
        m1, s1, n, t1 = mean_std(g["test_acc"]) if len(g) else (math.nan, math.nan, 0, ctx.not_run(m, "imagenet"))
        m5, s5, _, t5 = mean_std(g["test_top5"]) if len(g) else (math.nan, math.nan, 0, ctx.not_run(m, "imagenet"))
        row = {"Method": method_name(m), "Top-1 measured (mean ± std, n)": t1, "Top-5 measured (mean ± std, n)": t5}
        drow = {"method": m, "status": "measured" if n else t1, "top1_mean": m1, "top1_std": s1, "top5_mean": m5,
                "top5_std": s5, "n": n}
        for v in versions:
            r1, r5 = reported(m, "top1", v), reported(m, "top5", v)
            row[f"Paper {v} top-1 / top-5"] = f"{r1:.2f} / {r5:.2f}" if finite(r1) else DASH
            row[f"Δ top-1 vs {v}"] = signed(m1 - r1) if n and finite(r1) else DASH
            drow.update({f"reported_{v}_top1": r1, f"reported_{v}_top5": r5,
                         f"diff_{v}_top1": m1 - r1 if n else math.nan, f"diff_{v}_top5": m5 - r5 if n else math.nan})
        row.update({"Seeds": seeds_of(g), "Epochs": epochs_of(g), "Hardware": hardware_of(g)})
        drow.update({"seeds": seeds_of(g), "epochs": epochs_of(g), "hardware": hardware_of(g)})
        show.append(row)
        data.append(drow)
    notes = ctx.measured_note(ctx.primary[ctx.primary["dataset"] == "imagenet"])
    srcs = "; ".join(f"{v}: {join_unique(rep[rep['version'] == v]['source'])}" for v in versions)
    notes.append(f"Paper values (not measured here): {srcs}. The two versions of the paper report different "
                 f"ImageNet numbers; both are shown.")
    return Table(pd.DataFrame(data), pd.DataFrame(show), notes)

# T6 -------------------------------------------------------------------------------------
def t6_cost(ctx: Context) -> Table:
    """T6: training time, throughput, memory and size per method and data set."""
    show, data = [], []
    for m in ctx.cfg["methods"]:
        for d in ctx.cfg["datasets"]:
            g = pair(ctx.primary, m, d)
            if g.empty:
                show.append({"Method": method_name(m), "Data set": dataset_name(d), "Epoch time (s)": ctx.not_run(m, d),
                             "Images/s": DASH, "Peak train memory (MiB)": DASH, "Trainable params": DASH,
                             "Runs": 0, "Epochs": DASH, "Hardware": DASH})
                data.append({"method": m, "dataset": d, "status": ctx.not_run(m, d)})
                continue
            et, _, n, et_text = mean_std(g["epoch_time_s_mean"], scale=1.0)
            ips, _, _, ips_text = mean_std(g["train_images_per_s"], scale=1.0, digits=0)
            peak = g["peak_train_memory_bytes"].dropna()
            show.append({"Method": method_name(m), "Data set": dataset_name(d), "Epoch time (s)": et_text,
                         "Images/s": ips_text, "Peak train memory (MiB)": mib(peak.max()) if len(peak) else "n/a (CPU)",
                         "Trainable params": human_int(g["params_trainable"].mean()), "Runs": n,
                         "Epochs": epochs_of(g), "Hardware": hardware_of(g)})
            data.append({"method": m, "dataset": d, "status": "measured", "epoch_time_s_mean": et,
                         "images_per_s_mean": ips, "peak_train_memory_bytes_max": peak.max() if len(peak) else math.nan,
                         "params_trainable": g["params_trainable"].mean(), "n": n, "epochs": epochs_of(g),
                         "hardware": hardware_of(g)})
    notes = [f"Measured here (preset '{ctx.preset}'): mean ± std over runs of the per-run mean epoch time and "
             f"throughput; peak memory is CUDA's max allocated while training (not measured on a CPU). Times "
             f"depend on the hardware named per row and on other load on it."] + scale_note(ctx.primary)
    return Table(pd.DataFrame(data), pd.DataFrame(show), notes)


#: the function of every table in table_registry.TABLES (titles and labels are there)
BUILDERS: dict[str, Callable[[Context], Table]] = {
    "T1_main": t1_main,
    "T2_strategies": t2_strategies,
    "T3_pooling": lambda ctx: ablation(ctx, "pooling"),
    "T4_alpha": lambda ctx: ablation(ctx, "alpha"),
    "T5_imagenet": t5_imagenet,
    "T6_cost": t6_cost,
    "T8_variants": t8_variants,
    "T9_paired": t9_paired,
    "T10_budget": t10_budget,
    "T11_convergence": t11_convergence,
    "T12_width": t12_width,
}
if set(BUILDERS) != set(TABLES):
    raise RuntimeError(f"tables.py builds {sorted(BUILDERS)} but table_registry lists {sorted(TABLES)}: keep them equal")
TITLES = {name: (spec.title, spec.latex_label) for name, spec in TABLES.items()}


def build(name: str, runs: pd.DataFrame, cfg: dict[str, Any], budget_runs: pd.DataFrame | None = None) -> Table:
    """Table `name` of the runs (runs.csv) under the workflow settings `cfg`; `budget_runs` the
    shorter-budget study's runs.csv (T10 only)."""
    ctx = Context(runs, cfg)
    ctx.budget_runs = budget_runs
    table = BUILDERS[name](ctx)
    if cfg.get("finished_only"):  # a study in progress: say why cells are empty
        table.notes.append("Built from the finished runs only (finished_only: true): a cell without runs may "
                           "be a run that has not finished yet, not one left out of the study.")
    return table


def write(name: str, table: Table, paths: dict[str, str]) -> None:
    """The formatter: `table` as Markdown, LaTeX and HTML (display strings, title, notes) and
    CSV (the tidy numbers) at paths {"md": ..., "tex": ..., "csv": ..., "html": ...}."""
    title, label = TITLES[name]
    write_table(table.show, table.data, paths, title, label, table.notes)


def main_snakemake(snakemake: Any) -> None:
    log = setup_logging(snakemake)
    name = snakemake.wildcards.table
    reference = snakemake.input.get("reference")
    table = build(name, read_runs(snakemake.input.runs), snakemake.params.cfg,
                  read_runs(reference) if reference else None)
    write(name, table, {fmt: snakemake.output[fmt] for fmt in ("md", "tex", "csv", "html")})
    log.info("%s: %d rows", name, len(table.show))


if __name__ == "__main__":
    main_snakemake(snakemake)  # noqa: F821 - injected by Snakemake's script directive
