"""The curves plot logged with every finished run (a PNG on the MLflow run page)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from asge.tracking.records import number

#: per-readout training-accuracy columns by what they measure; a method names its own
#: (Method.train_acc_name): FF's is its positive/negative separation rate (chance 50 %), not a
#: class accuracy, and must not sit beside the others' `train_acc` under the same name
TRAIN_ACC_COLUMNS = {"train_acc": "training accuracy (classes)",
                     "train_posneg_acc": "training pos/neg separation (chance 50 %)"}


def train_acc_column(history: Sequence[Mapping[str, Any]]) -> str:
    """The history's training-accuracy column: `train_acc`, FF's `train_posneg_acc`, or any
    other `train_*acc` a method declares."""
    cols = list(history[0]) if history else []
    for c in (*TRAIN_ACC_COLUMNS, *cols):
        if c in cols and c.startswith("train_") and c.endswith("acc"):
            return c
    return "train_acc"


def plot_curves(history: Sequence[Mapping[str, Any]], title: str, path: Path) -> Path | None:
    """Train and validation accuracy per epoch, one line per readout; None without history."""
    if not history:
        return None
    train_col = train_acc_column(history)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    readouts = list(dict.fromkeys(r["readout"] for r in history))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, col in zip(axes, (train_col, "val_acc")):
        for ro in readouts:
            pts = [(float(r["epoch"]), number(r.get(col))) for r in history if r["readout"] == ro]
            pts = [(e, v) for e, v in pts if v is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=ro)
        ax.set_xlabel("epoch")
        ax.set_title(f"{col}: {TRAIN_ACC_COLUMNS.get(col, 'validation accuracy (classes)')}", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
