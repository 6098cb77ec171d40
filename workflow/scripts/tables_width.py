"""T12: does width bridge the distance to the paper? The width study's runs (study "width": the
same methods, data set and settings at other widths) beside the main study's runs of those
methods and seeds, which are the preset's own width. Per method and width: the primary
strategy's test accuracy, its gap to BP paired by seed, the gain per doubling of width, and a
straight line in log2(width) through the measured widths carried to the paper's width (the run
file's `channels`), labelled as an extrapolation, never as a measurement.
"""

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from stats import paired_differences, t_interval
from wfutil import (
    DASH,
    Context,
    Table,
    ci_text,
    dataset_name,
    epochs_of,
    finite,
    human_int,
    mean_std,
    method_name,
    signed,
    strategy_name,
    width_text,
)

BP = "bp"
#: T12's CSV columns (a row per method and width, plus one "extrapolation" row per method)
DATA_COLUMNS = ("method", "strategy", "width", "kind", "params", "mean", "std", "n", "gap", "gap_low", "gap_high",
                "gap_n", "per_doubling", "last_doubling", "max_residual", "reported")


def width_fraction(channels: Any, width: Any, full: list[int]) -> float:
    """The net's width as a fraction of the paper's: the median over layers of its channels
    (`channels` x the `width` multiplier, JSON text or a list) over the run file's."""
    ch = json.loads(channels) if isinstance(channels, str) else list(channels)
    mult = float(width) if finite(width) else 1.0
    if len(ch) != len(full):
        return math.nan  # another depth: not a point on this width axis
    return float(np.median([round(c * mult) / f for c, f in zip(ch, full)]))


def width_runs(ctx: Context) -> pd.DataFrame:
    """The primary-strategy rows of the width study's methods on its data set, with `w` added: every
    width-study run, and the main study's runs (the preset's width) at the width study's seeds."""
    spec = ctx.cfg.get("width") or {}
    if not spec:
        return ctx.all.iloc[0:0].assign(w=[])
    seeds = set(spec["seeds"]).union(*(spec.get("seeds_by") or {}).values())
    runs = ctx.all[((ctx.all["study"] == "width") | ((ctx.all["study"] == "main") & ctx.all["seed"].isin(seeds)))
                   & ctx.all["method"].isin(spec["methods"]) & (ctx.all["dataset"] == spec["dataset"])]
    runs = runs[runs["is_primary"].astype(bool)].copy()
    full = {m: ctx.run_files.get(f"{m}/{spec['dataset']}", {}).get("channels") for m in spec["methods"]}
    runs["w"] = [width_fraction(r["cfg_channels"], r["cfg_width"], full[r["method"]]) if full.get(r["method"])
                 else math.nan for _, r in runs.iterrows()]
    return runs


def log_linear(ws: list[float], accs: list[float], at: float = 1.0) -> tuple[float, float, float, float]:
    """(gain per doubling of width in points, the line's value at width `at`, the gain of the last
    measured doubling, the largest distance of a measured mean from the line) of the least-squares
    line through (log2 w, accuracy), `ws` ascending; NaN with fewer than two widths."""
    if len(set(ws)) < 2:
        return (math.nan,) * 4
    x = np.log2(ws)
    slope, icpt = np.polyfit(x, accs, 1)
    last = (accs[-1] - accs[-2]) / (x[-1] - x[-2])
    residual = float(np.max(np.abs(np.asarray(accs) - (slope * x + icpt))))
    return float(slope), float(slope * math.log2(at) + icpt), float(last), residual


def _gap(g: pd.DataFrame, bp: pd.DataFrame) -> tuple[float, float, float, int]:
    a = (100 * g.groupby("seed")["test_acc"].mean()).dropna()
    b = (100 * bp.groupby("seed")["test_acc"].mean()).dropna()
    shared = sorted(set(a.index) & set(b.index))
    d = paired_differences(a.reindex(shared).to_numpy(), b.reindex(shared).to_numpy())
    if not d.size:
        return math.nan, math.nan, math.nan, 0
    low, high = t_interval(d)
    return float(d.mean()), low, high, int(d.size)


def _measured(m: str, runs: pd.DataFrame) -> tuple[list[dict], list[dict], list[float], list[float]]:
    """(display rows, data rows, widths, mean accuracies) of method `m` at each measured width."""
    g_m = runs[runs["method"] == m]
    widths = sorted(w for w in set(g_m["w"]) if finite(w))
    show, data, means = [], [], []
    for w in widths:
        g = g_m[g_m["w"] == w]
        mean, std, n, text = mean_std(g["test_acc"])
        means.append(mean)
        gap, low, high, k = (math.nan,) * 3 + (0,) if m == BP else _gap(g, runs[(runs["method"] == BP) & (runs["w"] == w)])
        strategy = str(g["strategy"].iloc[0])
        show.append({"Method": method_name(m), "Strategy": strategy_name(m, strategy), "Width": width_text(w),
                     "Channels": "-".join(str(c) for c in json.loads(g["cfg_channels"].iloc[0])),
                     "Params": human_int(g["params_total"].mean()), "Epochs": epochs_of(g), "Test acc. (%)": text,
                     "− BP (pp, 95 % CI t)": f"{signed(gap)} {ci_text(low, high)} (n={k})" if k else DASH})
        data.append({"method": m, "strategy": strategy, "width": w, "kind": "measured",
                     "params": g["params_total"].mean(), "mean": mean, "std": std, "n": n, "gap": gap,
                     "gap_low": low, "gap_high": high, "gap_n": k, "per_doubling": math.nan,
                     "last_doubling": math.nan, "max_residual": math.nan, "reported": math.nan})
    return show, data, widths, means


def t12_width(ctx: Context) -> Table:
    """T12: test accuracy per method and width, gap to BP, and the labelled log-linear extrapolation."""
    spec = ctx.cfg.get("width") or {}
    if not spec:
        return Table(pd.DataFrame(columns=list(DATA_COLUMNS)), pd.DataFrame(columns=["Method", "Width"]),
                     ["No width study in this preset (`width`: null)."])
    runs, d = width_runs(ctx), spec["dataset"]
    show, data, fits = [], [], {}
    for m in spec["methods"]:
        s_rows, d_rows, widths, means = _measured(m, runs)
        show += s_rows
        data += d_rows
        fits[m] = (widths, *log_linear(widths, means))
    for m, (widths, slope, at_full, last, residual) in fits.items():
        if not finite(at_full):
            continue
        rep = ctx.reported[(ctx.reported["method"] == m) & (ctx.reported["dataset"] == d)
                           & (ctx.reported["metric"] == "top1")]
        r_val = float(rep["value"].iloc[-1]) if len(rep) else math.nan
        gap = at_full - fits[BP][2] if m != BP and BP in fits else math.nan
        show.append({"Method": method_name(m), "Strategy": "extrapolated", "Width": "1",
                     "Channels": "-".join(str(c) for c in ctx.run_files[f"{m}/{d}"]["channels"]),
                     "Params": DASH, "Epochs": DASH,
                     "Test acc. (%)": f"{at_full:.1f} (extrapolation: {signed(slope)} per doubling of width, line "
                                      f"through widths {', '.join(width_text(w) for w in widths)}, largest "
                                      f"residual {residual:.2f}; last doubling {signed(last)}; reported "
                                      f"{f'{r_val:.2f}' if finite(r_val) else DASH})",
                     "− BP (pp, 95 % CI t)": f"{signed(gap)} (extrapolation)" if finite(gap) else DASH})
        data.append({"method": m, "strategy": "extrapolated", "width": 1.0, "kind": "extrapolation",
                     "params": math.nan, "mean": at_full, "std": math.nan, "n": len(widths), "gap": gap,
                     "gap_low": math.nan, "gap_high": math.nan, "gap_n": 0, "per_doubling": slope,
                     "last_doubling": last, "max_residual": residual, "reported": r_val})
    notes = [f"Measured here (preset '{ctx.preset}'), {dataset_name(d)}: test accuracy in %, mean ± sample std "
             f"over seeds (n) of each method's primary strategy; the preset's own width is the main study's runs, "
             f"the other widths the width study's (same settings, seeds and epochs). Width: the channels as a "
             f"fraction of the paper's net (the run file).",
             "− BP: minus BP at the same width, paired by seed, with the 95 % Student-t interval of the differences "
             "and n.",
             "Extrapolated: the least-squares line in log2(width) through the measured means, carried to the "
             "paper's width at this preset's epochs; 'last doubling' is the gain between the two widest measured "
             "widths, the residual the largest distance of a measured mean from the line. It is an extrapolation, "
             "not a measurement: through two widths the line is exact and says nothing about curvature, and "
             "accuracy saturates, so it is an optimistic guide to what width alone would give, not a prediction of "
             "the paper's number (which also used more epochs)."]
    return Table(pd.DataFrame(data, columns=list(DATA_COLUMNS)), pd.DataFrame(show, columns=None if show else
                                                                           ["Method", "Width"]), notes)
