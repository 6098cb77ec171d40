"""The paper's figures, redrawn from this suite's run folders (PNG and PDF, matplotlib Agg).

fig1: FF per-layer positive / negative separation rate per epoch (G > θ for positives, G < θ for
      negatives; chance 50 %), on training batches and, where history.csv has them, on the
      validation split (train_pos_acc / val_pos_acc; older runs: pos_acc / neg_acc).
fig3: ASGE per-layer class accuracy per epoch, training left, validation right (chance 1/N).
      Both show every conv layer of the net that was run; the paper's selection (layers
      2..L-1 of VGG8) is drawn solid, the first and last layer dashed.
fig4: ASGE spatial goodness distributions (log scale) before pooling and after RMS, average and
      max pooling, for the two pooling layers with the most channels (diagnostics.pt["goodness"]).
cost: epoch time and inference parameters per method (figures_cost.py); budget: test accuracy at
      a short budget and at convergence (figures_budget.py); width: accuracy and gap to BP per
      width (figures_width.py, from table T12).
accuracy: per data set and method, ONE predictor: the line is its validation accuracy per
      epoch, the star its final test accuracy (mean over seeds, band / bar = min..max). The
      predictor is the method's primary strategy when that is a single readout (BP's head,
      CwC-FF's GA = its last conv layer), else Last Pred (the deepest layer); a primary strategy
      that combines readouts (Fusion) has no per-epoch validation curve and is marked apart
      (hollow diamond, test only). The legend names the predictor of every line.
"""

import math
import re
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from asge.runfolder import hardware_label, read_config, read_history, read_metrics  # noqa: E402
from figsave import save  # noqa: E402
from wfutil import dataset_classes, dataset_name, method_name, strategy_name  # noqa: E402

#: FF's positive / negative accuracy columns, newest spelling first
FF_COLUMNS = {("train", "pos"): ("train_pos_acc", "pos_acc"), ("train", "neg"): ("train_neg_acc", "neg_acc"),
              ("validation", "pos"): ("val_pos_acc",), ("validation", "neg"): ("val_neg_acc",)}


def layer_number(readout: str) -> int | None:
    m = re.fullmatch(r"layer(\d+)", str(readout))
    return int(m.group(1)) if m else None


def net_layers(readouts: Sequence[str]) -> list[str]:
    """The conv layers of the net (readouts layer1..layerL, in order; heads such as BP's
    `head` or CwC-FF's `sf_head` are not layers)."""
    nums = sorted({n for n in (layer_number(r) for r in readouts) if n is not None})
    return [f"layer{n}" for n in nums]


def paper_layers(layers: Sequence[str]) -> list[str]:
    """The paper's selection: layers 2..L-1 (its layers 2-7 of VGG8); every layer when L < 4."""
    return list(layers[1:-1]) if len(layers) >= 4 else list(layers)


def first_column(h: pd.DataFrame, names: Sequence[str]) -> str | None:
    return next((c for c in names if c in h and h[c].notna().any()), None)


def y_limits(ax: plt.Axes, values: Sequence[float], chance: float, far_off: float | None = None) -> bool:
    """A y-range that holds the data and chance (unless every value is `far_off`+ points above it)
    with a margin, inside [0, 100]; returns whether chance is in it."""
    finite = [v for v in values if np.isfinite(v)]
    shown = far_off is None or not finite or min(finite) - chance <= far_off
    vals = finite + ([chance] if shown else [])
    lo, hi = min(vals), max(vals)
    pad = max(2.0, 0.08 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
    return shown


def epoch_axis(ax: plt.Axes, last_epoch: float) -> None:
    """Integer epoch ticks (each of 1..E up to 12 epochs, where they still read apart) with room
    for the end-of-training markers (also for E = 1)."""
    last = max(1, int(last_epoch))
    ax.set_xlim(0.6, last + 0.45)
    if last <= 12:
        ax.set_xticks(range(1, last + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def per_layer_panels(history: pd.DataFrame, layers: Sequence[str], panels: Sequence[tuple[str, str]], chance: float,
                     chance_label: str, suptitle: str, ncols: int = 2,
                     ylabel: str = "accuracy (%)") -> tuple[plt.Figure, list[str]]:
    """One panel per (column, title): accuracy per epoch of every layer in `layers`, the
    paper's layers solid, the others dashed; the chance level as a grey line. Returns the
    figure and the layers drawn."""
    paper = set(paper_layers(layers))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.3 * nrows), sharey=True, squeeze=False)
    cmap = plt.get_cmap("viridis")
    drawn: list[str] = []
    values: list[float] = []
    for ax, (col, title) in zip(axes.flat, panels):
        for i, ro in enumerate(layers):
            h = history[history["readout"] == ro].sort_values("epoch")
            if col in h and h[col].notna().any():
                y = h[col].to_numpy(dtype=float) * 100
                values += list(y)
                label = ro.replace("layer", "layer ") + ("" if ro in paper else " (not in the paper's figure)")
                ax.plot(h["epoch"], y, marker="o", ms=3, color=cmap(i / max(1, len(layers) - 1)),
                        linestyle="-" if ro in paper else "--", label=label)
                drawn.append(ro)
        ax.axhline(chance, color="0.45", linestyle=":", linewidth=1.2, label=chance_label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        epoch_axis(ax, history["epoch"].max())
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    y_limits(axes.flat[0], values, chance)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.9), fontsize=8, frameon=False)
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig, list(dict.fromkeys(drawn))


def run_label(run_dir: Path) -> str:
    """The run in words: name, data set, width (channels), epochs, seed, hardware."""
    m = read_metrics(run_dir)
    cfg = read_config(run_dir)
    where = hardware_label(m.get("hardware") or {})
    width = f"channels {'-'.join(map(str, cfg['channels']))}" if cfg.get("channels") else "width ?"
    if cfg.get("width") not in (None, 1, 1.0):
        width += f" (width ×{cfg['width']})"
    return (f"{run_dir.name}: {dataset_name(m['dataset'])}, {width}, epochs={m['epochs']}, "
            f"seed {m['seed']}, {where}")


def readouts_of(run_dir: Path, history: pd.DataFrame) -> list[str]:
    if (run_dir / "metrics.json").is_file():
        return list(read_metrics(run_dir).get("readouts") or [])
    return list(dict.fromkeys(history["readout"]))


def fig1(history_csv: str, png: str, pdf: str) -> list[str]:
    run = Path(history_csv).parent
    h = read_history(run)
    panels = []
    for split in ("train", "validation"):
        for kind, title in (("pos", "positive samples (G > θ)"), ("neg", "negative samples (G < θ)")):
            col = first_column(h, FF_COLUMNS[(split, kind)])
            if col is not None:
                panels.append((col, f"{split}: {title}  [{col}]"))
    if not any(c.endswith("pos_acc") for c, _ in panels):
        raise ValueError(f"{history_csv} lacks FF's positive/negative columns {FF_COLUMNS[('train', 'pos')]}")
    # what FF's layers are trained on: telling positive from negative samples, not classes
    fig, drawn = per_layer_panels(h, net_layers(readouts_of(run, h)), panels, 50.0, "chance (50 %)",
                                  f"FF: per-layer positive / negative separation — {run_label(run)}",
                                  ylabel="pos./neg. separation rate (%)")
    save(fig, png, pdf)
    return drawn


def fig3(history_csv: str, png: str, pdf: str) -> list[str]:
    run = Path(history_csv).parent
    h = read_history(run)
    n = dataset_classes(read_metrics(run)["dataset"])
    fig, drawn = per_layer_panels(h, net_layers(readouts_of(run, h)),
                                  [("train_acc", "training (class accuracy)"), ("val_acc", "validation (class accuracy)")],
                                  100.0 / n, f"chance (1/{n})",
                                  f"ASGE: per-layer prediction accuracy — {run_label(run)}")
    save(fig, png, pdf)
    return drawn


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


def fig4(diagnostics_pt: str, png: str, pdf: str) -> list[int]:
    """Fig. 4 from an ASGE run's diagnostics.pt (its "goodness" samples); returns the layers drawn."""
    import torch

    g = torch.load(diagnostics_pt, map_location="cpu", weights_only=True)["goodness"]
    layers = pick_goodness_layers(g)
    if not layers:
        raise ValueError(f"{diagnostics_pt} holds no pooling layer")
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
    fig.suptitle(f"ASGE goodness distributions — {run_label(Path(diagnostics_pt).parent)}", fontsize=10)
    fig.tight_layout()
    save(fig, png, pdf)
    return layers


def strategy_readout(strategy: str, metrics: dict[str, Any]) -> str | None:
    """The single readout whose per-epoch validation accuracy IS `strategy`'s prediction, or
    None for a strategy that combines readouts (Fusion)."""
    readouts = list(metrics.get("readouts") or [])
    layers = net_layers(readouts)
    if strategy == "last":
        return readouts[-1] if readouts else None  # BP: its head; ASGE/FF: the deepest layer
    if strategy == "best":
        return metrics.get("best_readout")
    if strategy == "ga":  # CwC-FF's GA predicts with the last conv layer's class goodness
        return layers[-1] if layers else None
    if strategy == "sf":
        return "sf_head" if "sf_head" in readouts else None
    return None


def curve_strategy(metrics: dict[str, Any]) -> str:
    """The predictor a method's line and star show: the primary strategy when it is one
    readout, else Last Pred."""
    primary = metrics.get("primary_strategy") or "last"
    if strategy_readout(primary, metrics) is not None:
        return primary
    return "last" if "last" in (metrics.get("strategies") or {}) else primary


def method_marks(items: Sequence[tuple[dict, pd.DataFrame]], strategy: str, primary: str
                 ) -> tuple[pd.DataFrame, list[float], list[float], set]:
    """One method's runs (metrics, history) as drawn in the accuracy figure: the validation
    curves of `strategy` (%, a column per run), its test accuracies, the primary strategy's test
    accuracies (empty when it is `strategy`) and the readouts drawn."""
    curves, tests, primaries = [], [], []
    readouts = set()
    for m, h in items:
        ro = strategy_readout(strategy, m)
        readouts.add(ro)
        col = f"val_acc_{strategy}" if f"val_acc_{strategy}" in h else "val_acc"  # a strategy's own column wins
        hh = h[h["readout"] == ro].sort_values("epoch") if col == "val_acc" else h.drop_duplicates("epoch")
        curves.append(pd.Series(hh[col].to_numpy(dtype=float) * 100, index=hh["epoch"].to_numpy()))
        tests.append(m["strategies"][strategy]["acc"] * 100)
        if primary != strategy:
            primaries.append(m["strategies"][primary]["acc"] * 100)
    return pd.concat(curves, axis=1), tests, primaries, readouts


def fig_accuracy(dataset: str, run_dirs: Sequence[Path], png: str, pdf: str) -> dict[str, dict[str, Any]]:
    """The accuracy-per-epoch figure; returns what each method's marks show, per method:
    strategy, readout, primary, the line (epoch -> mean %), the star and diamond values."""
    runs: dict[str, list[tuple[dict, pd.DataFrame]]] = {}
    hardware, epochs = set(), set()
    for d in run_dirs:
        m = read_metrics(d)
        runs.setdefault(m["method"], []).append((m, read_history(d)))
        hardware.add(hardware_label(m.get("hardware") or {}))
        epochs.add(m["epochs"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    shown: dict[str, dict[str, Any]] = {}
    values: list[float] = []
    for i, (method, items) in enumerate(sorted(runs.items())):
        color, name = f"C{i}", method_name(method)
        strategy = curve_strategy(items[0][0])
        primary = items[0][0].get("primary_strategy") or strategy
        curve, tests, primaries, readouts = method_marks(items, strategy, primary)
        mean = curve.mean(axis=1)
        ro_text = "/".join(sorted(r.replace("layer", "layer ") for r in readouts if r))
        label = f"{name}: {strategy_name(method, strategy)} Pred ({ro_text}) (n={len(items)})"
        ax.plot(mean.index, mean.to_numpy(), color=color, marker="o", ms=3, label=label + " — val. line, test ★")
        if len(items) > 1:
            ax.fill_between(mean.index, curve.min(axis=1), curve.max(axis=1), color=color, alpha=0.15)
        x_end = mean.index.max()
        t = float(np.mean(tests))
        ax.errorbar([x_end], [t], yerr=[[t - min(tests)], [max(tests) - t]], fmt="*", ms=12, color=color,
                    markeredgecolor="black", capsize=3)
        info = {"strategy": strategy, "readouts": sorted(r for r in readouts if r), "primary": primary,
                "line": mean.to_dict(), "star": t, "diamond": None}
        values += list(mean.to_numpy()) + tests
        if primaries:
            p_mean = float(np.mean(primaries))
            ax.plot([x_end + 0.2], [p_mean], marker="D", ms=7, mfc="none", mec=color, mew=1.6, linestyle="none",
                    label=f"{name}: {strategy_name(method, primary)} Pred (primary), test only ◇")
            info["diamond"] = p_mean
            values += primaries
        shown[method] = info
    n = dataset_classes(dataset)
    chance = ax.axhline(100.0 / n, color="0.45", linestyle=":", linewidth=1.2, label=f"chance (1/{n})")
    if not y_limits(ax, values, 100.0 / n, far_off=40.0):  # MNIST at 88-98 %: lines squeezed together
        chance.set_label(f"chance (1/{n}), below the axis")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    epoch_axis(ax, max(epochs))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(f"{dataset_name(dataset)}: one predictor per method — line = its validation accuracy "
                 f"per epoch,\n★ = its final test accuracy · {', '.join(sorted(hardware))} · "
                 f"epochs {', '.join(map(str, sorted(epochs)))}", fontsize=8)
    fig.tight_layout()
    save(fig, png, pdf)
    return shown


def main_snakemake(snakemake: Any) -> None:
    from wfutil import setup_logging

    log = setup_logging(snakemake)
    kind, inp, out = snakemake.params.kind, snakemake.input, snakemake.output
    if kind in ("fig1", "fig3"):
        log.info("%s shows layers %s", kind, (fig1 if kind == "fig1" else fig3)(inp.history, out.png, out.pdf))
    elif kind == "fig4":
        log.info("fig4 shows layers %s", fig4(inp.diagnostics, out.png, out.pdf))
    elif kind == "accuracy":
        dirs = [Path(p).parent for p in inp.metrics]
        shown = fig_accuracy(snakemake.params.dataset, dirs, out.png, out.pdf)
        for method, info in shown.items():
            log.info("%s: line and star = %s (readout %s), primary %s", method, info["strategy"], info["readouts"],
                     info["primary"])
    elif kind == "cost":
        from figures_cost import fig_cost

        fig_cost(inp.runs, out.png, out.pdf, snakemake.params.methods)
    elif kind == "budget":
        from figures_budget import fig_budget

        shown = fig_budget(inp.reference, inp.runs, snakemake.params.reported, snakemake.params.methods, out.png, out.pdf)
        for (d, ms), pts in shown.items():
            log.info("%s %s: %s", d, ms, ", ".join(f"{e:g} ep {mu:.2f} % (n={n})" for e, mu, n in pts))
    elif kind == "width":
        from figures_width import fig_width

        log.info("width: %s", fig_width(inp.table, out.png, out.pdf))
    else:
        raise ValueError(f"unknown figure kind {kind!r}")
    log.info("%s -> %s", kind, out.png)


if __name__ == "__main__":
    main_snakemake(snakemake)  # noqa: F821 - injected by Snakemake's script directive
