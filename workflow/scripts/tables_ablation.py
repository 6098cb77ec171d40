"""T3 / T4 (ASGE's pooling and α ablations) and T8 (every ablation variant beside BP: the
recipe study and the recipe check on validation), from the ablation study's runs. Built by
tables.py (`TABLES`); the formatter is there too.
"""

import json
import math
from typing import Any

import pandas as pd

from wfutil import (
    DASH,
    NOT_RUN,
    STRATEGY_ORDER,
    Context,
    Table,
    dataset_name,
    epochs_of,
    finite,
    hardware_of,
    human_int,
    mean_std,
    method_name,
    pair,
    seeds_of,
    signed,
)

POOLINGS = ("rms", "avg", "max")
ALPHAS = (0.0, 0.5, 1.0, 2.0)


# T3 / T4 ---------------------------------------------------------------------------------
def with_main_reference(ctx: Context, spec: dict[str, Any]) -> pd.DataFrame:
    """The ablation runs; where the preset plans no variant "reference", the main study's runs
    of the ablated method and data set (at the ablation's seeds) stand in for it: they are the
    same settings, so a preset need not train them twice."""
    abl = ctx.ablations
    if not spec.get("variants") or "reference" in spec["variants"]:
        return abl
    ref = pair(ctx.main, spec["method"], spec["dataset"])
    ref = ref[ref["seed"].isin(spec["seeds"])].assign(variant="reference")
    return pd.concat([abl, ref], ignore_index=True) if len(ref) else abl


def ablation(ctx: Context, axis: str) -> Table:
    """T3 (axis 'pooling') or T4 ('alpha'): the ablation rows that differ from the reference in `axis`."""
    spec = ctx.cfg.get("ablations") or {}
    abl = with_main_reference(ctx, spec)
    col, other = ("cfg_pooling", "cfg_alpha") if axis == "pooling" else ("cfg_alpha", "cfg_pooling")
    levels: list[Any] = list(POOLINGS) if axis == "pooling" else list(ALPHAS)
    if len(abl):
        ref = abl[abl["variant"] == "reference"]
        ref_other = (ref if len(ref) else abl)[other].mode().iloc[0]
        abl = abl[abl[other] == ref_other]
        for v in abl[col].unique():
            if (float(v) if axis == "alpha" else v) not in levels:
                levels.append(float(v) if axis == "alpha" else v)
    found = list(dict.fromkeys(abl["strategy"])) or ["fusion", "last", "best"]
    strategies = sorted(found, key=lambda s: STRATEGY_ORDER.index(s) if s in STRATEGY_ORDER else len(STRATEGY_ORDER))
    show, data = [], []
    same_patches: dict[str, list[Any]] = {}  # patch counts -> the α levels that give them
    for lv in levels:
        g = abl[(abl[col].astype(float) == float(lv)) if axis == "alpha" else (abl[col] == lv)]
        row = {axis.capitalize() if axis == "pooling" else "α": lv}
        drow: dict[str, Any] = {axis: lv, "status": "measured" if len(g) else NOT_RUN}
        for s in strategies:
            mean, std, n, text = mean_std(g[g["strategy"] == s]["test_acc"])
            row[f"{s} acc. (mean ± std, n)"] = text
            drow.update({f"{s}_acc_mean": mean, f"{s}_acc_std": std, f"{s}_n": n})
        if axis == "alpha":
            dims = g["goodness_dims_total"].dropna()
            row["Goodness dims (all layers)"] = human_int(dims.iloc[0]) if len(dims) else DASH
            drow["goodness_dims_total"] = dims.iloc[0] if len(dims) else math.nan
            pat = g["patches"].dropna()
            row["Patches P_l per layer"] = " / ".join(map(str, json.loads(pat.iloc[0]))) if len(pat) else DASH
            drow["patches"] = pat.iloc[0] if len(pat) else ""
            if len(pat):
                same_patches.setdefault(pat.iloc[0], []).append(lv)
        row.update({"Seeds": seeds_of(g), "Epochs": epochs_of(g), "Hardware": hardware_of(g)})
        show.append(row)
        data.append(drow)
    what = (f"{method_name(spec.get('method', 'asge'))} on {dataset_name(spec.get('dataset', '?'))}" if spec
            else "no ablation study")
    notes = ctx.measured_note(abl)
    fixed = "α" if axis == "pooling" else "pooling"
    notes.append(f"{what}; every row differs from the reference run only in {axis} ({fixed} as in the reference).")
    if len(abl) > len(ctx.ablations):
        notes.append("The reference row is the main study's runs of the same method and data set (the same "
                     "settings; the preset does not train them a second time).")
    for patches, lvs in same_patches.items():
        if len(lvs) > 1:
            notes.append(f"α = {' and α = '.join(f'{float(v):g}' for v in lvs)} give the same patch counts "
                         f"P_l = {' / '.join(map(str, json.loads(patches)))} at these layer widths and map sizes "
                         f"(P_l = round((C_L / C_l)^α), at least min_patches, at most the map side), so they "
                         f"train the same model: identical rows are expected, not an error.")
    return Table(pd.DataFrame(data), pd.DataFrame(show), notes)

# T8 -------------------------------------------------------------------------------------
def t8_variants(ctx: Context) -> Table:
    """Every ablation variant in the preset's order, with BP on the same data set (main
    study) as the reference row."""
    spec = ctx.cfg.get("ablations") or {}
    abl = ctx.ablations
    dataset = spec.get("dataset", "?")
    bp = pair(ctx.primary, "bp", dataset)
    show, data = [], []
    # yardsticks: each variant's best strategy against BP and against the variant "reference"
    # (rows are added BP first, then the variants in preset order)
    top = {"bp": math.nan, "reference": math.nan}
    val_ref = {"fusion": math.nan}  # the reference's validation accuracy of the headline strategy

    strategies = [s for s in STRATEGY_ORDER if s in set(abl["strategy"])] or ["fusion", "last", "best"]

    def add(label: str, settings: str, g: pd.DataFrame, own: list[str], factor: str, role: str = "") -> None:
        row: dict[str, Any] = {"Factor": factor, "Variant": label, "Settings": settings}
        drow: dict[str, Any] = {"factor": factor, "variant": label, "settings": settings,
                                "status": "measured" if len(g) else NOT_RUN}
        means = []
        for s in strategies:  # the same columns on every row; a strategy the method lacks shows "–"
            mean, std, n, text = mean_std(g[g["strategy"] == s]["test_acc"])
            row[f"{s} acc."] = text if s in own else DASH
            drow.update({f"{s}_acc_mean": mean, f"{s}_acc_std": std, f"{s}_n": n})
            means.append(mean)
        for s in strategies:  # validation: what recipe choices are made on (runs before #26 lack it)
            mean, _, n, text = mean_std(g[g["strategy"] == s]["val_acc"])
            row[f"{s} val. acc."] = (text if n else DASH) if s in own else DASH
            drow.update({f"{s}_val_acc_mean": mean, f"{s}_val_n": n})
        val_fusion = drow.get("fusion_val_acc_mean", math.nan)
        if role == "reference":
            val_ref["fusion"] = val_fusion
        row["Fusion val. − reference"] = DASH if role == "bp" else signed(val_fusion - val_ref["fusion"], 2)
        drow["fusion_val_minus_reference"] = val_fusion - val_ref["fusion"]
        best = max((m for m in means if finite(m)), default=math.nan)
        if role:
            top[role] = best
        row["Best strategy − reference"] = DASH if role == "bp" else signed(best - top["reference"], 1)
        row["Best strategy − BP"] = DASH if role == "bp" else signed(best - top["bp"], 1)
        drow.update({"best_strategy_acc": best, "minus_reference": best - top["reference"],
                     "minus_bp": best - top["bp"]})
        layer_cells(g, row, drow)
        show.append(row)
        data.append(drow)

    add(f"BP (reference, {dataset_name(dataset)})", "same backbone and budget", bp, ["last"], "learning rule", "bp")
    for variant, settings in (spec.get("variants") or {}).items():
        g = abl[abl["variant"] == variant]
        text = ", ".join(f"{k}={v}" for k, v in (settings or {}).items()) or "defaults"
        add(variant, text, g, strategies, " + ".join(sorted(settings or {})) or "reference",
            "reference" if variant == "reference" else "")
    notes = ctx.measured_note(abl)
    if spec:
        notes.append(T8_NOTE.format(method=method_name(spec.get("method", "asge")), dataset=dataset_name(dataset)))
    return Table(pd.DataFrame(data), pd.DataFrame(show), notes)


T8_NOTE = ("{method} on {dataset}: each variant changes the listed keys of the reference; 'Last − best layer' < 0 "
           "means accuracy declines with depth. 'Best strategy' is the highest of the strategies' test accuracies: "
           "a yardstick for comparing variants, optimistic because it is taken on the test set (no model is "
           "selected with it; Fusion is ASGE's headline strategy). Choose a recipe on the 'val. acc.' columns (the "
           "run's held-out validation split, never the test set); the Best strategy's validation accuracy is "
           "optimistic too, its layer is chosen on that split.")


def layer_cells(g: pd.DataFrame, row: dict[str, Any], drow: dict[str, Any]) -> None:
    """The per-layer test accuracy (mean over the variant's runs), epoch time, seeds and epochs
    of one T8 row, into its display `row` and data `drow`."""
    per_layer = [json.loads(v) for v in g.drop_duplicates("run")["test_acc_per_readout"]]
    layers = [100 * sum(v) / len(v) for v in zip(*per_layer)] if per_layer else []
    row["Test acc. per layer (last epoch)"] = " / ".join(f"{a:.1f}" for a in layers) or DASH
    row["Last − best layer"] = signed(layers[-1] - max(layers), 1) if len(layers) > 1 else DASH
    epoch_t = g.drop_duplicates("run")["epoch_time_s_mean"].dropna()
    row["Epoch time (s)"] = f"{epoch_t.mean():.0f}" if len(epoch_t) else DASH
    row.update({"Seeds": seeds_of(g), "Epochs": epochs_of(g)})
    drow.update({"per_layer_test_acc": json.dumps(layers), "epoch_time_s": epoch_t.mean() if len(epoch_t) else math.nan})
