"""Collect the finished run folders into one tidy table: results/.../tables/runs.csv.

The run folders are the only source: every row comes from one run's metrics.json, config.yaml
and history.csv, one row per run and prediction strategy; study and variant from the folder's
place and name (results/<preset>/runs/<study>/<run>/, asge.runfolder.run_labels), so no plan
of the workflow is needed.
Inputs and outputs come from the Snakemake rule `aggregate`; standalone:

    python workflow/scripts/aggregate.py OUT.csv RUN_DIR [RUN_DIR ...]
"""

import json
import sys
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from asge.atomic import write_csv
from asge.methods import method_class
from asge.runfolder import COST_FIELDS, hardware_label, read_config, read_history, read_metrics, run_labels
from runs_schema import RUNS_COLUMNS

#: epochs over which a converged run's best validation accuracy must stop rising (issue #26)
FLAT_EPOCHS = 3

#: config keys copied into the table (the ablation axes and what changes a run's scale)
CONFIG_COLUMNS = ("pooling", "alpha", "width", "channels", "pool_layers", "lr", "batch_size", "subset_per_class",
                  "test_subset_per_class", "val_size", "image_size", "optimizer", "goodness_site",
                  "goodness_reduction", "logit_scale", "groups", "theta", "fusion_from")



def inference_structure(method: str, strategy: str, layers_run: Any, cfg: dict[str, Any]) -> tuple[Any, Any]:
    """(conv blocks, heads) that `strategy` runs at inference: the method class says
    (`Method.inference_structure`); metrics.json's `inference_layers` counts readouts (BP's one
    head, CwC-FF's layers plus its Sf head), not blocks. An unknown method fails loudly."""
    try:
        run = int(layers_run)
    except (TypeError, ValueError):
        return None, None
    return method_class(method).inference_structure(strategy, run, cfg)


def validation_curve(run_dir: Path) -> dict[str, Any]:
    """The best readout's validation accuracy per epoch (history.csv), reduced to what the
    convergence check needs: its best value over the run and how much of it the last k epochs
    added (percentage points), k = FLAT_EPOCHS, or all but the first epoch in shorter runs."""
    hist = read_history(run_dir)
    if hist.empty:
        return {"val_best": None, "val_gain_last3": None, "val_gain_epochs": None}
    running = hist.groupby("epoch")["val_acc"].max().sort_index().cummax()
    k = min(FLAT_EPOCHS, len(running) - 1)
    gain = 100 * (running.iloc[-1] - running.iloc[-1 - k]) if k > 0 else None
    return {"val_best": float(running.iloc[-1]), "val_gain_last3": gain, "val_gain_epochs": k or None}


def _cell(v: Any) -> Any:
    """Lists and dicts as JSON text (one CSV cell)."""
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def run_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of one finished run folder (one per prediction strategy)."""
    metrics = read_metrics(run_dir)
    cfg = read_config(run_dir)
    study, variant = run_labels(run_dir, metrics)
    hw = metrics.get("hardware") or {}
    extra = metrics.get("method_extra") or {}
    base = {
        "study": study, "run": run_dir.name, "method": metrics["method"], "dataset": metrics["dataset"],
        "seed": metrics["seed"], "variant": variant, "epochs": metrics["epochs"],
        "best_readout": metrics.get("best_readout"), "config_hash": metrics.get("config_hash"),
        "test_acc_per_readout": _cell(metrics.get("test_acc_per_readout")),
        **{k: metrics.get(k) for k in COST_FIELDS},
        "goodness_dims_total": sum(extra["goodness_dims"]) if extra.get("goodness_dims") else None,
        "patches": _cell(extra.get("patches")), "readouts": _cell(metrics.get("readouts")),
        "hardware": hardware_label(hw), "device": hw.get("device"), "gpu": hw.get("gpu"), "cpu": hw.get("cpu"),
        "threads": hw.get("threads"), "torch": hw.get("torch"),
        **{f"cfg_{k}": _cell(cfg.get(k)) for k in CONFIG_COLUMNS},
        "amp_bf16": (metrics.get("numerics") or {}).get("amp_bf16"),
        "channels_last": (metrics.get("numerics") or {}).get("channels_last"),
        **validation_curve(run_dir),
        "run_dir": str(run_dir),
    }
    rows = []
    primary = metrics.get("primary_strategy")
    for strategy, s in (metrics.get("strategies") or {}).items():
        blocks, heads = inference_structure(metrics["method"], strategy, s.get("inference_layers"), cfg)
        val = (metrics.get("val_acc_per_strategy") or {}).get(strategy)  # older runs: not recorded
        rows.append({**base, "strategy": strategy, "is_primary": strategy == primary, "test_acc": s.get("acc"),
                     "val_acc": val,
                     "inference_blocks": blocks, "inference_heads": heads,
                     "test_top5": s.get("top5"), "inference_params": s.get("inference_params"),
                     "inference_layers": s.get("inference_layers"),
                     "inference_memory_bytes": s.get("inference_memory_bytes"),
                     "inference_memory_method": s.get("inference_memory_method")})
    return rows


def aggregate(run_dirs: Iterable[Path]) -> pd.DataFrame:
    """One row per run and prediction strategy, sorted by study, method, data set, variant, seed,
    with the columns of runs_schema.RUNS_COLUMNS in their order (no run: no row, every column).
    A row whose columns differ from that list fails: the list and run_rows must agree."""
    rows = [r for d in run_dirs for r in run_rows(Path(d))]
    for row in rows[:1]:  # every row has the same keys
        extra = [c for c in row if c not in RUNS_COLUMNS]
        lacking = [c for c in RUNS_COLUMNS if c not in row]
        if extra or lacking:
            raise ValueError(f"run_rows and runs_schema.RUNS_COLUMNS disagree: columns not in the list {extra}, "
                             f"columns run_rows does not give {lacking}; declare every column of runs.csv there")
    df = pd.DataFrame(rows, columns=list(RUNS_COLUMNS))
    return df.sort_values(["study", "method", "dataset", "variant", "seed", "strategy"], kind="stable")


#: the columns of runs.csv that the report's HTML view shows (the CSV has them all)
DISPLAY = ("study", "run", "method", "dataset", "seed", "variant", "epochs", "strategy", "is_primary", "test_acc",
           "inference_blocks", "inference_heads", "epoch_time_s_mean", "hardware")


def display(df: pd.DataFrame) -> pd.DataFrame:
    """runs.csv for reading: the main columns, accuracies in %."""
    if df.empty:
        return pd.DataFrame({"runs": ["no finished run"]})
    out = df[list(DISPLAY)].copy()
    out["test_acc"] = [f"{100 * v:.2f}" if pd.notna(v) else "–" for v in out["test_acc"]]
    out = out.rename(columns={"test_acc": "test acc. (%)"})
    return out.fillna("")


def main_snakemake(snakemake: Any) -> None:
    from asge.atomic import write_text
    from wfutil import setup_logging, to_html

    log = setup_logging(snakemake)
    dirs = [Path(p).parent for p in snakemake.input.metrics]
    df = aggregate(dirs)
    Path(snakemake.output.table).parent.mkdir(parents=True, exist_ok=True)
    write_csv(snakemake.output.table, df)
    if "html" in snakemake.output.keys():
        write_text(snakemake.output.html, to_html(display(df), "Every run: one row per run and prediction strategy",
                                                  [f"All {len(df.columns)} columns: {snakemake.output.table}."]))
    log.info("%d rows from %d runs -> %s", len(df), len(dirs), snakemake.output.table)


if __name__ == "__main__":
    if "snakemake" in globals():
        main_snakemake(snakemake)  # noqa: F821 - injected by Snakemake's script directive
    else:
        out, *dirs = sys.argv[1:]
        write_csv(out, aggregate([Path(d) for d in dirs]))
