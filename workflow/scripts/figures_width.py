"""The width figure: does width bridge the distance to the paper? Drawn from table T12 (its CSV),
so that it shows exactly the table's numbers.

Left: each method's test accuracy (primary strategy) against the net's width as a fraction of
the paper's (log2 scale): measured means with ± one sample std over seeds (solid), the labelled
log-linear extrapolation (thin dashed: the fitted line, from the narrowest width to the paper's)
and the paper's reported number (a star at width 1); a budget check at other epochs (T12's "budget"
rows) is an open marker off the line. Right: the gap to BP per measured width with its 95 %
t-interval.
"""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from figsave import save
from wfutil import method_name, width_text


def fig_width(table_csv: str, png: str, pdf: str) -> dict[str, list[tuple[float, float]]]:
    """Draw the figure from T12_width.csv; returns {method: [(width, mean %) per measured width]}."""
    t = pd.read_csv(table_csv)
    fig, (ax, ax_gap) = plt.subplots(1, 2, figsize=(10.4, 5.4))
    shown: dict[str, list[tuple[float, float]]] = {}
    for i, (m, g) in enumerate(t.groupby("method", sort=False)):
        color = f"C{i}"
        meas = g[g["kind"] == "measured"].sort_values("width")
        ext = g[g["kind"] == "extrapolation"]
        n = "/".join(str(int(k)) for k in meas["n"])
        ax.errorbar(meas["width"], meas["mean"], yerr=meas["std"].fillna(0), color=color, marker="o", capsize=3,
                    label=f"{method_name(m)} ({meas['strategy'].iloc[0]}), n={n}")
        shown[m] = list(zip(meas["width"], meas["mean"]))
        for _, r in g[g["kind"] == "budget"].iterrows():
            ax.errorbar([r["width"]], [r["mean"]], yerr=[0 if math.isnan(r["std"]) else r["std"]], color=color,
                        marker="D", mfc="white", capsize=3, linestyle="none",
                        label=f"{method_name(m)} at {int(r['epochs'])} epochs, n={int(r['n'])} (budget check)")
            if r["gap_n"] > 0:
                ax_gap.plot([r["width"]], [r["gap"]], "D", mfc="white", color=color,
                            label=f"{method_name(m)} − BP at {int(r['epochs'])} epochs, n={int(r['gap_n'])}")
        if len(ext):
            e = ext.iloc[0]
            line = np.array([meas["width"].iloc[0], e["width"]])  # the fitted line, from the narrowest width
            ax.plot(line, e["mean"] + e["per_doubling"] * np.log2(line), "--", color=color,
                    linewidth=1, label=f"{method_name(m)} extrapolated: {e['mean']:.1f} ({e['per_doubling']:+.1f} "
                                       f"per doubling; not measured)")
            if not math.isnan(e["reported"]):
                ax.plot([1.0], [e["reported"]], "*", color=color, markersize=11,
                        label=f"{method_name(m)} reported {e['reported']:.2f} (paper: width 1, its epochs)")
        gaps = meas[meas["gap_n"] > 0]
        if len(gaps):
            err = [(gaps["gap"] - gaps["gap_low"]).fillna(0), (gaps["gap_high"] - gaps["gap"]).fillna(0)]  # n=1: none
            ax_gap.errorbar(gaps["width"], gaps["gap"], yerr=err,
                            color=color, marker="o", capsize=3, label=f"{method_name(m)} − BP (95 % CI t, n={n})")
    widths = sorted(set(t["width"]))
    for a in (ax, ax_gap):
        a.set_xscale("log", base=2)
        a.set_xticks(widths, [width_text(w) for w in widths])
        a.set_xlabel("width (fraction of the paper's channels, log2 scale)")
        a.grid(alpha=0.3)
        # below the axes: inside, the legend hid measured points (the budget check's among them)
        a.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    ax.set_ylabel("test accuracy (%)")
    ax_gap.axhline(0, color="k", linewidth=0.8)
    ax_gap.set_ylabel("gap to BP at the same width (pp)")
    fig.suptitle("Width, measured here (mean ± std over seeds) and extrapolated (dashed, a straight line in "
                 "log2 width: not a measurement)", fontsize=9)
    fig.tight_layout()
    save(fig, png, pdf)
    return shown
