"""T9: ASGE against each baseline, paired by seed. For every data set and every other method of
the preset, the runs of the main study that share a seed are paired: ASGE's primary strategy
against each strategy of the baseline (its primary one first, e.g. CwC-FF's GA, then its Sf head;
all of them, so that no strategy is picked by its test accuracy); the table gives the mean
difference of their test accuracies (ASGE − baseline, in percentage points), its 95 % CIs
(paired percentile bootstrap over the seeds, and Student t) and n, the number of shared seeds.
A pair without runs, or without a shared seed, says so.
"""

import math
from typing import Any

import numpy as np
import pandas as pd

from stats import RESAMPLES, paired_bootstrap, t_interval
from wfutil import DASH, Context, Table, ci_text, dataset_name, epochs_of, method_name, pair, scale_note, signed

REFERENCE = "asge"
NO_SHARED = "no shared seeds"


def by_seed(g: pd.DataFrame) -> pd.Series:
    """Test accuracy in % per seed (mean over rows of one seed: there is one run per seed, the
    mean only guards against a duplicate), seeds without an accuracy dropped."""
    if g.empty:
        return pd.Series(dtype=float)
    return (100 * g.groupby("seed")["test_acc"].mean()).dropna()


def strategies_of(ctx: Context, method: str, dataset: str) -> list[str]:
    """The strategies of `method` on `dataset` in the main study: the primary one first; [''] when
    it has no runs (one row that says so)."""
    primary = sorted(set(pair(ctx.primary, method, dataset)["strategy"]))
    every = sorted(set(pair(ctx.main, method, dataset)["strategy"]))
    return primary + [s for s in every if s not in primary] or [""]


def paired_row(ctx: Context, dataset: str, baseline: str, strategy: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(display row, data row) of ASGE's primary strategy against `baseline`'s `strategy` on
    `dataset` ('': the baseline has no runs there)."""
    ga = pair(ctx.primary, REFERENCE, dataset)
    gb = pair(ctx.main, baseline, dataset)
    gb = gb[gb["strategy"] == strategy]
    a, b = by_seed(ga), by_seed(gb)
    shared = sorted(set(a.index) & set(b.index))
    if a.empty or b.empty:
        missing = REFERENCE if a.empty else baseline
        status = f"{method_name(missing)} {ctx.not_run(missing, dataset)}"
    else:
        status = "measured" if shared else NO_SHARED
    xa, xb = a.reindex(shared).to_numpy(), b.reindex(shared).to_numpy()
    diff, low, high, n = paired_bootstrap(xa, xb)
    t_low, t_high = t_interval(xa - xb)
    # rounded so that last-bit noise of the resample means cannot change the CSV
    diff, low, high, t_low, t_high = (round(v, 6) if math.isfinite(v) else v for v in (diff, low, high, t_low, t_high))
    ahead = int(np.sum(xa > xb))
    seeds = ", ".join(str(int(s)) for s in shared)
    only = sorted((set(a.index) | set(b.index)) - set(shared))
    if status == NO_SHARED:  # which seeds each side ran, so that the gap is visible
        shown_seeds = "; ".join(f"{method_name(m)}: {', '.join(str(int(s)) for s in x.index)}"
                                for m, x in ((REFERENCE, a), (baseline, b)))
    else:
        shown_seeds = seeds or DASH
    show = {"Data set": dataset_name(dataset), "Baseline": method_name(baseline), "Strategy": strategy or DASH,
            "n (shared seeds)": n, "Seeds": shown_seeds,
            f"{method_name(REFERENCE)} (mean)": f"{xa.mean():.2f}" if n else DASH,
            "Baseline (mean)": f"{xb.mean():.2f}" if n else DASH,
            "Δ (pp)": signed(diff) if n else status,
            "95 % CI (t)": f"{ci_text(t_low, t_high)} (n={n})" if math.isfinite(t_low) else DASH,
            "95 % CI (paired bootstrap)": ci_text(low, high),
            f"{method_name(REFERENCE)} ahead": f"{ahead}/{n}" if n else DASH,
            f"Epochs ({method_name(REFERENCE)} / baseline)": f"{epochs_of(ga)} / {epochs_of(gb)}"}
    data = {"dataset": dataset, "baseline": baseline, "baseline_strategy": strategy, "status": status, "n": n, "seeds": seeds,
            "seeds_unpaired": ", ".join(str(int(s)) for s in only),
            "reference_mean": float(xa.mean()) if n else math.nan, "baseline_mean": float(xb.mean()) if n else math.nan,
            "diff_mean": diff, "ci95_boot_low": low, "ci95_boot_high": high, "ci95_t_low": t_low,
            "ci95_t_high": t_high, "reference_ahead": ahead if n else math.nan,
            "reference_strategy": ", ".join(sorted(set(ga["strategy"]))),
            "reference_epochs": epochs_of(ga) if len(ga) else "", "baseline_epochs": epochs_of(gb) if len(gb) else ""}
    return show, data


def t9_paired(ctx: Context) -> Table:
    """T9: per data set, ASGE minus each baseline of the preset on the seeds both ran."""
    baselines = [m for m in ctx.cfg["methods"] if m != REFERENCE]
    rows = [paired_row(ctx, d, m, s) for d in ctx.cfg["datasets"] for m in baselines for s in strategies_of(ctx, m, d)]
    # the columns also when there is no pair (a preset with one method)
    show = pd.DataFrame([r[0] for r in rows], columns=None if rows else ["Data set", "Baseline", "Δ (pp)"])
    data = pd.DataFrame([r[1] for r in rows], columns=None if rows else ["dataset", "baseline", "status", "n"])
    ref = method_name(REFERENCE)
    notes = [f"Measured here (preset '{ctx.preset}'), main study: {ref}'s primary strategy (as in T1) against every "
             f"strategy of each baseline, its primary one first (Strategy; e.g. CwC-FF's GA, then its Sf head). "
             f"Paired by seed: for every seed that both {ref} and the baseline ran, the difference of their test "
             f"accuracies; Δ is the mean of these differences in percentage points (pp; > 0: {ref} higher), "
             f"n the number of shared seeds. A seed that only one of the two ran is left out (the CSV lists "
             f"it under seeds_unpaired), so the means here can differ from T1's.",
             f"95 % CI (t), the primary interval: mean ± t(0.975, n−1)·s/√n of the differences, assuming them "
             f"roughly normal, with n beside it. 95 % CI (paired bootstrap), for comparison only: percentile "
             f"bootstrap of the mean difference, resampling seeds ({RESAMPLES:,} resamples with a fixed seed, so "
             f"a rebuild gives the same numbers); with 2–3 seeds it can only recombine those differences "
             f"(n = 2: [min, max]) and covers the true difference far less often than 95 %. With n = 1 neither "
             f"interval exists ('–').",
             f"{ref} ahead: on how many of the shared seeds {ref} was more accurate. Epochs: the budget of "
             f"each side; a difference at unequal epochs is no comparison at equal budget."]
    if REFERENCE not in ctx.cfg["methods"]:
        notes.append(f"{ref} is not among this preset's methods: no pair.")
    elif not baselines:
        notes.append("No baseline among this preset's methods: no pair.")
    return Table(data, show, notes + scale_note(ctx.primary))
