"""T12: does width bridge the distance to the paper? The width study's runs (study "width": the
same methods, data set and settings at other widths) beside the main study's runs of those
methods and seeds, which are the preset's own width. Per method and width: the primary
strategy's test accuracy, its gap to BP paired by seed, the gain per doubling of width, and a
straight line in log2(width) through the measured widths carried to the paper's width (the run
file's `channels`), labelled as an extrapolation, never as a measurement. A variant that also
changes `epochs` is a budget check at its width: its row gives the gain over the same width at
the main study's epochs, paired by seed, and stays off the line.
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
#: T12's CSV columns: a row per method, width and epochs ("measured" at the main study's epochs,
#: "budget" for a budget check at other epochs), plus one "extrapolation" row per method
DATA_COLUMNS = ("method", "strategy", "width", "epochs", "kind", "params", "mean", "std", "n", "gap", "gap_low",
                "gap_high", "gap_n", "epoch_gain", "epoch_gain_low", "epoch_gain_high", "epoch_gain_n",
                "per_doubling", "last_doubling", "max_residual", "reported")
#: the display column of a budget check's gain over the same width at the main study's epochs
EPOCH_GAIN = "vs. main epochs (pp, 95 % CI t)"


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


def base_epochs(runs: pd.DataFrame) -> int:
    """The main study's epochs: the schedule the widths are compared at (and the line fitted on)."""
    main = runs[runs["study"] == "main"]
    return int((main if len(main) else runs)["epochs"].mode().iloc[0])


def _paired(a_rows: pd.DataFrame, b_rows: pd.DataFrame) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of a − b in points, paired by seed, with the 95 % t-interval (NaN for n < 2)."""
    a = (100 * a_rows.groupby("seed")["test_acc"].mean()).dropna()
    b = (100 * b_rows.groupby("seed")["test_acc"].mean()).dropna()
    shared = sorted(set(a.index) & set(b.index))
    d = paired_differences(a.reindex(shared).to_numpy(), b.reindex(shared).to_numpy())
    if not d.size:
        return math.nan, math.nan, math.nan, 0
    low, high = t_interval(d)
    return float(d.mean()), low, high, int(d.size)


def _diff_text(v: float, low: float, high: float, k: int) -> str:
    if not k:
        return DASH
    return f"{signed(v)} {ci_text(low, high)} (n={k})" if k > 1 else f"{signed(v)} (n=1, no interval)"


def _measured(m: str, runs: pd.DataFrame, base: int) -> tuple[list[dict], list[dict], list[float], list[float]]:
    """(display rows, data rows, widths, mean accuracies) of method `m` at each measured width and
    number of epochs; the widths and means returned (for the line) are those at `base` epochs."""
    g_m = runs[runs["method"] == m]
    points = sorted({(w, int(e)) for w, e in zip(g_m["w"], g_m["epochs"]) if finite(w)})
    show, data, widths, means = [], [], [], []
    for w, e in points:
        g = g_m[(g_m["w"] == w) & (g_m["epochs"] == e)]
        mean, std, n, text = mean_std(g["test_acc"])
        if e == base:
            widths.append(w)
            means.append(mean)
        bp = runs[(runs["method"] == BP) & (runs["w"] == w) & (runs["epochs"] == e)]
        gap = (math.nan,) * 3 + (0,) if m == BP else _paired(g, bp)
        more = (math.nan,) * 3 + (0,) if e == base else _paired(g, g_m[(g_m["w"] == w) & (g_m["epochs"] == base)])
        strategy = str(g["strategy"].iloc[0])
        show.append({"Method": method_name(m), "Strategy": strategy_name(m, strategy), "Width": width_text(w),
                     "Channels": "-".join(str(c) for c in json.loads(g["cfg_channels"].iloc[0])),
                     "Params": human_int(g["params_total"].mean()), "Epochs": epochs_of(g), "Test acc. (%)": text,
                     "− BP (pp, 95 % CI t)": _diff_text(*gap), EPOCH_GAIN: _diff_text(*more)})
        data.append({"method": m, "strategy": strategy, "width": w, "epochs": e,
                     "kind": "measured" if e == base else "budget",
                     "params": g["params_total"].mean(), "mean": mean, "std": std, "n": n, "gap": gap[0],
                     "gap_low": gap[1], "gap_high": gap[2], "gap_n": gap[3], "epoch_gain": more[0],
                     "epoch_gain_low": more[1], "epoch_gain_high": more[2], "epoch_gain_n": more[3],
                     "per_doubling": math.nan, "last_doubling": math.nan, "max_residual": math.nan,
                     "reported": math.nan})
    return show, data, widths, means


def t12_width(ctx: Context) -> Table:
    """T12: test accuracy per method and width, gap to BP, and the labelled log-linear extrapolation."""
    spec = ctx.cfg.get("width") or {}
    if not spec:
        return Table(pd.DataFrame(columns=list(DATA_COLUMNS)), pd.DataFrame(columns=["Method", "Width"]),
                     ["No width study in this preset (`width`: null)."])
    runs, d = width_runs(ctx), spec["dataset"]
    base = base_epochs(runs) if len(runs) else 0
    show, data, fits = [], [], {}
    for m in spec["methods"]:
        s_rows, d_rows, widths, means = _measured(m, runs, base)
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
                     "Params": DASH, "Epochs": str(base),
                     "Test acc. (%)": f"{at_full:.1f} (extrapolation: {signed(slope)} per doubling of width, line "
                                      f"through widths {', '.join(width_text(w) for w in widths)}, largest "
                                      f"residual {residual:.2f}; last doubling {signed(last)}; reported "
                                      f"{f'{r_val:.2f}' if finite(r_val) else DASH})",
                     "− BP (pp, 95 % CI t)": f"{signed(gap)} (extrapolation)" if finite(gap) else DASH,
                     EPOCH_GAIN: DASH})
        data.append({"method": m, "strategy": "extrapolated", "width": 1.0, "epochs": base, "kind": "extrapolation",
                     "params": math.nan, "mean": at_full, "std": math.nan, "n": len(widths), "gap": gap,
                     "gap_low": math.nan, "gap_high": math.nan, "gap_n": 0, "per_doubling": slope,
                     "last_doubling": last, "max_residual": residual, "reported": r_val})
    budget = any(r["kind"] == "budget" for r in data)
    notes = [f"Measured here (preset '{ctx.preset}'), {dataset_name(d)}: test accuracy in %, mean ± sample std "
             f"over seeds (n) of each method's primary strategy; the preset's own width is the main study's runs, "
             f"the other widths the width study's (same settings and seeds; {base} epochs unless the row says "
             f"otherwise). Width: the channels as a fraction of the paper's net (the run file).",
             "− BP: minus BP at the same width and epochs, paired by seed, with the 95 % Student-t interval of the "
             "differences and n (no interval for n = 1).",
             f"Extrapolated: the least-squares line in log2(width) through the measured means at {base} epochs, "
             "carried to the paper's width at those epochs; 'last doubling' is the gain between the two widest "
             "measured widths, the residual the largest distance of a measured mean from the line. It is an "
             "extrapolation, not a measurement: through two widths the line is exact and says nothing about "
             "curvature, and accuracy saturates, so it is an optimistic guide to what width alone would give, not "
             "a prediction of the paper's number (which also used more epochs)."]
    if budget:
        notes.append(f"{EPOCH_GAIN.split(' (')[0]}: a row at other epochs (a budget check at its width, off the "
                     f"line) minus the same method and width at {base} epochs, paired by seed (the variant's own "
                     "settings: its runs' request.yaml).")
    show_df = pd.DataFrame(show, columns=None if show else ["Method", "Width"])
    if not budget and EPOCH_GAIN in show_df:
        show_df = show_df.drop(columns=EPOCH_GAIN)  # no budget check: the column would be dashes only
    return Table(pd.DataFrame(data, columns=list(DATA_COLUMNS)), show_df, notes)
