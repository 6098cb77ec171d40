"""The paper's figures, redrawn from this suite's run folders (PNG and PDF, matplotlib Agg).

fig1: FF per-layer training accuracy per epoch, positives left, negatives right (history.csv
      pos_acc / neg_acc; layers 2..L-1 like the paper's layers 2-7 of VGG8, all when L < 4).
fig3: ASGE per-layer accuracy per epoch, training left, validation right.
fig4: ASGE spatial goodness distributions (log scale) before pooling and after RMS, average and
      max pooling, for the two pooling layers with the most channels (goodness.pt).
accuracy: per data set, validation accuracy per epoch of every method (mean over seeds, band =
      min..max), with the final test accuracy of the primary strategy marked at the last epoch.
"""

import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from asge.atomic import atomic_write  # noqa: E402

METHOD_NAMES = {"asge": "ASGE", "ff": "FF", "cwc": "CwC-FF", "bp": "BP"}
DATASET_NAMES = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
                 "imagenet": "ImageNet"}


def save(fig: plt.Figure, png: str, pdf: str) -> None:
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(png, lambda p: fig.savefig(p, format="png", dpi=150, bbox_inches="tight"))
    atomic_write(pdf, lambda p: fig.savefig(p, format="pdf", bbox_inches="tight"))
    plt.close(fig)


def layer_number(readout: str) -> int | None:
    m = re.fullmatch(r"layer(\d+)", str(readout))
    return int(m.group(1)) if m else None


def shown_layers(history: pd.DataFrame) -> list[str]:
    """Readouts layer2..layer(L-1) as in the paper's VGG8 figures; every layer when L < 4."""
    layers = sorted({n for n in (layer_number(r) for r in history["readout"].unique()) if n is not None})
    if len(layers) >= 4:
        layers = layers[1:-1]
    return [f"layer{n}" for n in layers]


def per_layer_panels(history: pd.DataFrame, columns: Sequence[str], titles: Sequence[str], suptitle: str) -> plt.Figure:
    layers = shown_layers(history)
    fig, axes = plt.subplots(1, len(columns), figsize=(5 * len(columns), 3.6), sharey=True)
    cmap = plt.get_cmap("viridis")
    for ax, col, title in zip(np.atleast_1d(axes), columns, titles):
        for i, ro in enumerate(layers):
            h = history[history["readout"] == ro].sort_values("epoch")
            if col in h and h[col].notna().any():
                ax.plot(h["epoch"], h[col] * 100, marker="o", ms=3, color=cmap(i / max(1, len(layers) - 1)),
                        label=ro.replace("layer", "layer "))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    np.atleast_1d(axes)[0].set_ylabel("accuracy (%)")
    np.atleast_1d(axes)[-1].legend(fontsize=8, loc="best")
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def run_label(run_dir: Path) -> str:
    m = json.loads((run_dir / "metrics.json").read_text())
    hw = m.get("hardware") or {}
    where = hw.get("gpu") or f"CPU, threads={hw.get('threads', '?')}"
    return f"{run_dir.name}: {DATASET_NAMES.get(m['dataset'], m['dataset'])}, seed {m['seed']}, epochs={m['epochs']}, {where}"


def fig1(history_csv: str, png: str, pdf: str) -> None:
    h = pd.read_csv(history_csv)
    missing = [c for c in ("pos_acc", "neg_acc") if c not in h]
    if missing:
        raise ValueError(f"{history_csv} lacks the FF columns {missing}")
    fig = per_layer_panels(h, ["pos_acc", "neg_acc"], ["positive samples (G > θ)", "negative samples (G < θ)"],
                           f"FF: per-layer training accuracy — {run_label(Path(history_csv).parent)}")
    save(fig, png, pdf)


def fig3(history_csv: str, png: str, pdf: str) -> None:
    h = pd.read_csv(history_csv)
    fig = per_layer_panels(h, ["train_acc", "val_acc"], ["training", "validation"],
                           f"ASGE: per-layer prediction accuracy — {run_label(Path(history_csv).parent)}")
    save(fig, png, pdf)


def pick_goodness_layers(g: dict[str, Any]) -> list[int]:
    """The pooling layers shown in Fig. 4: a 512- and a 256-channel layer when both exist (the
    paper's), else the layers with the most and second-most channels (deepest on ties)."""
    chans = {int(k[len("layer"):-len("_channels")]): int(v) for k, v in g.items() if k.endswith("_channels")}
    by_c: dict[int, int] = {}
    for layer, c in sorted(chans.items()):
        by_c[c] = layer  # the deepest layer of each width
    if 512 in by_c and 256 in by_c:
        return [by_c[512], by_c[256]]
    widths = sorted(by_c, reverse=True)[:2]
    if len(widths) == 1 and len(chans) > 1:  # one width only: the two deepest pooling layers
        return sorted(chans, reverse=True)[:2]
    return [by_c[c] for c in widths]


def fig4(goodness_pt: str, png: str, pdf: str) -> list[int]:
    import torch

    g = torch.load(goodness_pt, map_location="cpu", weights_only=True)
    layers = pick_goodness_layers(g)
    if not layers:
        raise ValueError(f"{goodness_pt} holds no pooling layer")
    fig, axes = plt.subplots(1, len(layers), figsize=(5.2 * len(layers), 3.8))
    kinds = [("origin", "G-Origin (before pooling)"), ("rms", "RMS pooling"), ("avg", "average pooling"),
             ("max", "max pooling")]
    for ax, layer in zip(np.atleast_1d(axes), layers):
        values = {k: g[f"layer{layer}_{k}"].double().numpy() for k, _ in kinds}
        pos = np.concatenate([v[v > 0] for v in values.values()])
        lo, hi = (pos.min(), pos.max()) if len(pos) else (1e-6, 1.0)
        bins = np.logspace(math.log10(lo), math.log10(hi * 1.0001), 50)
        for k, label in kinds:
            v = values[k]
            zeros = float((v <= 0).mean()) * 100
            label += f" ({zeros:.0f}% zero)" if zeros >= 0.5 else ""
            if k == "origin":  # filled: RMS pooling preserves the patch energy, its line may cover it
                ax.hist(v[v > 0], bins=bins, histtype="stepfilled", color="0.75", label=label)
            else:
                ax.hist(v[v > 0], bins=bins, histtype="step", linewidth=1.4, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("spatial goodness per patch (log scale)")
        ax.set_ylabel("count")
        ax.set_title(f"layer {layer}, C = {int(g[f'layer{layer}_channels'])}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"ASGE goodness distributions — {run_label(Path(goodness_pt).parent)}", fontsize=10)
    fig.tight_layout()
    save(fig, png, pdf)
    return layers


def primary_curve(history: pd.DataFrame, metrics: dict[str, Any]) -> pd.Series:
    """Validation accuracy per epoch of the run's validation-selected readout (best_readout)."""
    h = history[history["readout"] == metrics["best_readout"]].sort_values("epoch")
    return pd.Series(h["val_acc"].to_numpy() * 100, index=h["epoch"].to_numpy())


def fig_accuracy(dataset: str, run_dirs: Sequence[Path], png: str, pdf: str) -> None:
    by_method: dict[str, list[tuple[pd.Series, float]]] = {}
    hardware, epochs = set(), set()
    for d in run_dirs:
        m = json.loads((d / "metrics.json").read_text())
        h = pd.read_csv(d / "history.csv")
        by_method.setdefault(m["method"], []).append((primary_curve(h, m), m["test_acc"] * 100))
        hw = m.get("hardware") or {}
        hardware.add(hw.get("gpu") or f"CPU, threads={hw.get('threads', '?')}")
        epochs.add(m["epochs"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (method, items) in enumerate(sorted(by_method.items())):
        color = f"C{i}"
        curves = pd.concat([c for c, _ in items], axis=1)
        mean = curves.mean(axis=1)
        ax.plot(mean.index, mean.to_numpy(), color=color, marker="o", ms=3,
                label=f"{METHOD_NAMES.get(method, method)} (n={len(items)})")
        if len(items) > 1:
            ax.fill_between(mean.index, curves.min(axis=1), curves.max(axis=1), color=color, alpha=0.15)
        test = [t for _, t in items]
        ax.errorbar([mean.index.max()], [np.mean(test)], yerr=[[np.mean(test) - min(test)], [max(test) - np.mean(test)]],
                    fmt="*", ms=11, color=color, markeredgecolor="black", capsize=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"{DATASET_NAMES.get(dataset, dataset)}: validation accuracy per epoch (lines; readout chosen on "
                 f"validation)\n★ = final test accuracy, primary strategy · {', '.join(sorted(hardware))} · "
                 f"epochs {', '.join(map(str, sorted(epochs)))}", fontsize=8)
    fig.tight_layout()
    save(fig, png, pdf)


def main_snakemake(snakemake: Any) -> None:
    from wfutil import setup_logging

    log = setup_logging(snakemake)
    kind = snakemake.params.kind
    out = snakemake.output
    if kind == "fig1":
        fig1(snakemake.input.history, out.png, out.pdf)
    elif kind == "fig3":
        fig3(snakemake.input.history, out.png, out.pdf)
    elif kind == "fig4":
        layers = fig4(snakemake.input.goodness, out.png, out.pdf)
        log.info("fig4 shows layers %s", layers)
    elif kind == "accuracy":
        dirs = [Path(p).parent for p in snakemake.input.metrics]
        fig_accuracy(snakemake.wildcards.dataset, dirs, out.png, out.pdf)
    else:
        raise ValueError(f"unknown figure kind {kind!r}")
    log.info("%s -> %s", kind, out.png)


if __name__ == "__main__":
    main_snakemake(snakemake)  # noqa: F821 - injected by Snakemake's script directive
