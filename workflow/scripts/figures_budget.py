"""The budget figure: test accuracy per method at a short budget and at convergence.

One panel per data set; x is the number of training epochs (log scale), y the test accuracy of
each method's primary strategy (dashed: the others its paper reports, e.g. CwC-FF's Sf head): mean over seeds, the band
min..max over seeds, n in the legend. The paper's reported number is a dotted line in the
method's colour. Drawn by figures.py (kind "budget") from two runs tables: the shorter-budget
study's (`budget_reference`) and this preset's.
"""

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from figsave import save
from runs_schema import read_runs
from wfutil import dataset_name, method_name, strategy_name, suite_methods


def _extra(method: str) -> tuple[str, ...]:
    """The strategies drawn beside a method's primary one: the others its paper reports (the
    method class's `headline_strategies`, e.g. CwC-FF's Sf head)."""
    if method not in suite_methods():
        return ()
    from asge.methods import method_class

    return method_class(method).shown_strategies()[1:]


def _points(runs: pd.DataFrame, method: str, dataset: str, strategy: str | None) -> tuple[float, list[float], str]:
    """(epochs, test accuracies in % per seed, strategy) of one method's strategy (None: primary)."""
    g = runs[(runs["study"] == "main") & (runs["method"] == method) & (runs["dataset"] == dataset)]
    g = g[g["is_primary"].astype(bool)] if strategy is None else g[g["strategy"] == strategy]
    if g.empty:
        return float("nan"), [], strategy or ""
    return float(g["epochs"].max()), list(100 * g.groupby("seed")["test_acc"].mean()), str(g["strategy"].iloc[0])


def fig_budget(short_csv: str, long_csv: str, reported: Sequence[dict[str, Any]], methods: Sequence[str],
               png: str, pdf: str) -> dict[tuple[str, str], list[tuple[float, float, int]]]:
    """Draw the figure; returns {(data set, method/strategy): [(epochs, mean %, n) per budget]}."""
    short, long = read_runs(short_csv), read_runs(long_csv)
    datasets = [d for d in dict.fromkeys(long["dataset"]) if d in set(short["dataset"])] or list(dict.fromkeys(long["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.2), squeeze=False)
    shown: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    for ax, d in zip(axes[0], datasets):
        for i, m in enumerate(methods):
            color = f"C{i}"
            for strategy in (None, *_extra(m)):
                pts = [_points(runs, m, d, strategy) for runs in (short, long)]
                pts = [(e, accs, s) for e, accs, s in pts if accs]
                if not pts:
                    continue
                x = [e for e, _, _ in pts]
                mean = [float(np.mean(a)) for _, a, _ in pts]
                s = pts[-1][2]
                style = "-" if strategy is None else "--"
                n = "/".join(str(len(a)) for _, a, _ in pts)
                ax.plot(x, mean, style, color=color, marker="o",
                        label=f"{method_name(m)} ({strategy_name(m, s)}), n={n}")
                ax.fill_between(x, [min(a) for _, a, _ in pts], [max(a) for _, a, _ in pts], color=color, alpha=0.15)
                shown[(d, f"{m}/{s}")] = [(e, mu, len(a)) for (e, a, _), mu in zip(pts, mean)]
            rep = [r for r in reported if r["method"] == m and r["dataset"] == d and r.get("metric", "top1") == "top1"]
            if rep:
                ax.axhline(float(rep[-1]["value"]), color=color, linestyle=":", linewidth=1.2,
                           label=f"{method_name(m)} reported {float(rep[-1]['value']):.2f} (paper scale)")
        ax.set_xscale("log")
        budgets = sorted({e for (dd, _), pts in shown.items() if dd == d for e, _, _ in pts})
        ax.set_xticks(budgets, [f"{e:g}" for e in budgets])  # the budgets drawn, not 2x10^0
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training epochs (log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(dataset_name(d), fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6.5, loc="lower right")
    fig.suptitle("Test accuracy at the short budget and at convergence, measured here (band: min..max over "
                 "seeds; dotted: the paper's number at its own scale;\nthe two budgets' nets may differ in width: "
                 "T10 gives each one's parameters)", fontsize=9)
    fig.tight_layout()
    save(fig, png, pdf)
    return shown
