"""T10 and T11: how the results move with the training budget, and whether the runs converged.

T10 puts each method's test accuracy at this preset's budget beside a shorter-budget study's
(`budget_reference`, e.g. the 2-3-epoch reference study's runs.csv), with the gap to BP at
both budgets, paired by seed (Student-t CI, n beside it), and the distance to the paper's
reported number. T11 lists, for every run, the best validation accuracy and how much of it
the last three epochs added: a run has flattened when that gain is under 0.3 points.
"""

import math
from typing import Any

import pandas as pd

from runs_schema import empty_runs
from stats import paired_differences, t_interval
from wfutil import (
    DASH,
    STRATEGY_ORDER,
    Context,
    Table,
    ci_text,
    dataset_name,
    epochs_of,
    finite,
    human_int,
    mean_std,
    method_name,
    pair,
    seeds_of,
    signed,
)

BP = "bp"
#: a run has flattened when its best validation accuracy rose less than this over its last 3 epochs (pp)
FLAT_PP = 0.3
#: ... over this many final epochs
FLAT_EPOCHS = 3


def _strategies(runs: pd.DataFrame, method: str, dataset: str) -> set[str]:
    return set(pair(runs, method, dataset)["strategy"])


def _primary(runs: pd.DataFrame) -> pd.DataFrame:
    main = runs[runs["study"] == "main"]
    return main[main["is_primary"].astype(bool)]


def gap_to_bp(runs: pd.DataFrame, method: str, dataset: str, strategy: str) -> dict[str, Any]:
    """Mean test accuracy (%) of `method`'s `strategy` and its gap to BP's primary strategy,
    paired by seed, with the t-interval of the paired differences."""
    g = pair(runs[runs["study"] == "main"], method, dataset)
    g = g[g["strategy"] == strategy]
    bp = pair(_primary(runs), BP, dataset)
    mean, std, n, text = mean_std(g["test_acc"])
    out = {"mean": mean, "std": std, "n": n, "text": text, "epochs": epochs_of(g), "seeds": seeds_of(g),
           "params": g.drop_duplicates("run")["params_total"].mean(),
           "gap": math.nan, "gap_low": math.nan, "gap_high": math.nan, "gap_n": 0}
    if method == BP or not len(g) or not len(bp):
        return out
    a = (100 * g.groupby("seed")["test_acc"].mean()).dropna()
    b = (100 * bp.groupby("seed")["test_acc"].mean()).dropna()
    shared = sorted(set(a.index) & set(b.index))
    d = paired_differences(a.reindex(shared).to_numpy(), b.reindex(shared).to_numpy())
    if d.size:
        low, high = t_interval(d)
        out.update(gap=float(d.mean()), gap_low=low, gap_high=high, gap_n=int(d.size))
    return out


def _gap_text(r: dict[str, Any]) -> str:
    if not r["gap_n"]:
        return DASH
    ci = f" {ci_text(r['gap_low'], r['gap_high'])}" if finite(r["gap_low"]) else ""
    return f"{signed(r['gap'])}{ci} (n={r['gap_n']})"


def t10_budget(ctx: Context) -> Table:
    """T10: every method and strategy at the short budget and at this preset's, gap to BP at both."""
    short = ctx.budget_runs if ctx.budget_runs is not None else empty_runs()
    show, data = [], []
    for d in ctx.cfg["datasets"]:
        for m in ctx.cfg["methods"]:
            found = _strategies(ctx.main, m, d) | _strategies(short[short["study"] == "main"], m, d)
            for s in sorted(found, key=lambda s: STRATEGY_ORDER.index(s) if s in STRATEGY_ORDER else 99):
                a, b = gap_to_bp(short, m, d, s), gap_to_bp(ctx.all, m, d, s)
                rep = ctx.reported[(ctx.reported["method"] == m) & (ctx.reported["dataset"] == d)
                                   & (ctx.reported["metric"] == "top1")]
                r_val = float(rep["value"].iloc[-1]) if len(rep) else math.nan
                primary = s in _strategies(ctx.primary, m, d) | _strategies(_primary(short), m, d)
                show.append({"Data set": dataset_name(d), "Method": method_name(m),
                             "Strategy": s + (" (primary)" if primary else ""),
                             "Short: epochs": a["epochs"], "Short: params": human_int(a["params"]),
                             "Short: test acc.": a["text"], "Short: − BP (pp, 95 % CI t)": _gap_text(a),
                             "Converged: epochs": b["epochs"], "Converged: params": human_int(b["params"]),
                             "Converged: test acc.": b["text"], "Converged: − BP (pp, 95 % CI t)": _gap_text(b),
                             "Gap change (pp)": signed(b["gap"] - a["gap"]) if b["gap_n"] and a["gap_n"] else DASH,
                             "Reported": f"{r_val:.2f}" if finite(r_val) else DASH,
                             "Converged − reported": signed(b["mean"] - r_val) if b["n"] and finite(r_val) else DASH})
                data.append({"dataset": d, "method": m, "strategy": s, "primary": primary,
                             **{f"short_{k}": v for k, v in a.items() if k != "text"},
                             **{f"converged_{k}": v for k, v in b.items() if k != "text"},
                             "reported": r_val})
    notes = [f"Measured here: 'Short' is the study in {ctx.cfg.get('budget_reference') or '(none)'}, 'Converged' "
             f"this preset ('{ctx.preset}'); test accuracy in %, mean ± sample std over seeds (n). Epochs and "
             f"parameter counts are given per side: where the widths differ too (params), the change is one of "
             f"budget and width together, not of epochs alone.",
             "− BP: the method's strategy minus BP's classifier on the same data set, paired by seed (seeds both "
             "ran), mean difference in percentage points with the 95 % Student-t interval of the differences "
             "and n; '–' where fewer than one shared seed. Gap change > 0: the method closes on BP with training.",
             "Reported: the paper's number at its own (full-width, longer) scale, for orientation; 'Converged − "
             "reported' is a distance at different widths and budgets, not a failed or passed reproduction."]
    return Table(pd.DataFrame(data), pd.DataFrame(show), notes)


def t11_convergence(ctx: Context) -> Table:
    """T11: per run, the best validation accuracy and what its last three epochs added."""
    show, data = [], []
    for _, r in ctx.all.drop_duplicates(["study", "run"]).iterrows():
        gain, k = r["val_gain_last3"], r["val_gain_epochs"]
        # converged: flat over the full FLAT_EPOCHS window; a shorter run can only show it still rises
        flat = bool(finite(gain) and gain < FLAT_PP and finite(k) and int(k) == FLAT_EPOCHS)
        status = "flat" if flat else ("still rising" if finite(gain) and gain >= FLAT_PP
                                      else "too few epochs to tell" if finite(gain) else "–")
        show.append({"Study": r["study"], "Run": r["run"], "Epochs": int(r["epochs"]),
                     "Best val. acc. (%)": f"{100 * r['val_best']:.2f}" if finite(r["val_best"]) else DASH,
                     "Gain in the last k epochs (pp)": signed(gain) if finite(gain) else DASH,
                     "k": int(k) if finite(k) else DASH, "Converged": status})
        data.append({"study": r["study"], "run": r["run"], "method": r["method"], "dataset": r["dataset"],
                     "seed": r["seed"], "epochs": r["epochs"], "val_best": r["val_best"],
                     "val_gain": gain, "val_gain_epochs": k, "flat": flat})
    n_flat = sum(d["flat"] for d in data)
    notes = [f"Measured here (preset '{ctx.preset}'), validation split (never the test set): per epoch the best "
             f"readout's validation accuracy; 'Best val. acc.' its maximum over the run, 'Gain in the last k "
             f"epochs' that maximum minus the maximum up to k epochs before the end (k = 3, or all but the first "
             f"epoch in shorter runs). A run counts as converged when the gain over its last 3 epochs is under "
             f"{FLAT_PP} points: {n_flat} of {len(data)} runs here."]
    return Table(pd.DataFrame(data), pd.DataFrame(show, columns=None if show else ["Run", "Converged"]), notes)
