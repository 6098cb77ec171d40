"""The cost figure: mean epoch time per method and data set (bars, min..max over runs) and the
inference parameters of each method's primary strategy, from the runs table (main study).
Drawn by figures.py (kind "cost")."""

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from figsave import save
from runs_schema import read_runs
from wfutil import dataset_name, method_name, strategy_name


def fig_cost(runs_csv: str, png: str, pdf: str, order: Sequence[str] = ()) -> pd.DataFrame:
    """Mean epoch time per method and data set, and inference parameters of the primary
    strategy (main study), methods in `order` (the configured one) first; returns the numbers."""
    runs = read_runs(runs_csv)
    prim = runs[(runs["study"] == "main") & runs["is_primary"].astype(bool)]
    if prim.empty:
        raise ValueError(f"{runs_csv} holds no main-study run")
    methods = [m for m in order if m in set(prim["method"])] + sorted(set(prim["method"]) - set(order))
    datasets = list(dict.fromkeys(prim["dataset"]))
    stats = prim.groupby(["method", "dataset"]).agg(time=("epoch_time_s_mean", "mean"), tmin=("epoch_time_s_mean", "min"),
                                                    tmax=("epoch_time_s_mean", "max"),
                                                    params=("inference_params", "mean"),
                                                    strategy=("strategy", "first")).reset_index()
    fig, (ax_t, ax_p) = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / max(1, len(datasets))
    x = np.arange(len(methods))
    for j, d in enumerate(datasets):
        sd = stats[stats["dataset"] == d].set_index("method").reindex(methods)
        t = sd["time"].to_numpy(dtype=float)
        err = [t - sd["tmin"].to_numpy(dtype=float), sd["tmax"].to_numpy(dtype=float) - t]
        ax_t.bar(x + (j - (len(datasets) - 1) / 2) * width, t, width, yerr=err, capsize=2,
                 label=dataset_name(d))
    ax_t.set_xticks(x, [method_name(m) for m in methods])
    ax_t.set_ylabel("mean epoch time (s)")
    ax_t.set_title("training: time per epoch", fontsize=9)
    ax_t.legend(fontsize=8, loc="best")
    ax_t.grid(alpha=0.3, axis="y")
    # one data set (parameters differ between data sets): the one with the most methods run
    counts = prim.groupby("dataset")["method"].nunique()
    shown = max(datasets, key=lambda d: counts[d])
    first = stats[stats["dataset"] == shown].set_index("method").reindex(methods)
    ax_p.bar(x, first["params"].to_numpy(dtype=float), color=[f"C{i}" for i in range(len(methods))])
    ax_p.set_xticks(x, [f"{method_name(m)}\n{strategy_name(m, s)} Pred" if isinstance(s, str)
                        else f"{method_name(m)}\n(not run on it)" for m, s in zip(methods, first["strategy"])])
    ax_p.set_yscale("log")
    ax_p.set_ylabel("parameters at inference")
    ax_p.set_title(f"inference: parameters of the primary strategy ({dataset_name(shown)})", fontsize=9)
    ax_p.grid(alpha=0.3, axis="y")
    hardware = ", ".join(sorted(set(prim["hardware"].astype(str))))
    fig.suptitle(f"Cost, measured here · {hardware} · epochs {', '.join(map(str, sorted(prim['epochs'].unique())))}",
                 fontsize=9)
    fig.tight_layout()
    save(fig, png, pdf)
    return stats
