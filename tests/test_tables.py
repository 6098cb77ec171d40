"""The workflow's table, aggregate and figure scripts on small fake run folders (no training):
display names from the registry and catalog, one function per table plus the formatter, the
metrics schema read through asge.runfolder, T1's intervals over seeds, T9's pairs by seed,
Fig. 4 from diagnostics.pt."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

import aggregate  # noqa: E402
import figures  # noqa: E402
import tables  # noqa: E402
import wfutil  # noqa: E402

from asge.runfolder import COST_FIELDS, hardware_label  # noqa: E402

CFG = {"preset": "t", "methods": ["asge", "bp"], "datasets": ["mnist", "cifar10"], "not_run": [],
       "reported": [{"method": "dtg-ff", "dataset": "cifar10", "metric": "top1", "value": 91.8, "source": "x"}],
       "ablations": {"method": "asge", "dataset": "mnist"}}


def fake_run(root: Path, study: str, name: str, method: str, acc: float, hw: dict | None = None) -> Path:
    d = root / study / name
    d.mkdir(parents=True)
    metrics = {"method": method, "dataset": "mnist", "seed": 0, "epochs": 2, "primary_strategy": "last",
               "best_readout": "layer2", "readouts": ["layer1", "layer2"], "test_acc_per_readout": [0.5, acc],
               "params_total": 10, "params_trainable": 8, "epoch_time_s_mean": 1.5, "compile_time_s": 3.0,
               "hardware": hw or {"device": "cpu", "cpu": "x86_64", "threads": 2},
               "strategies": {"last": {"acc": acc, "inference_layers": 2, "inference_params": 10}}}
    (d / "metrics.json").write_text(json.dumps(metrics))
    (d / "config.yaml").write_text("channels: [4, 8]\npooling: rms\nalpha: 1.0\n")
    return d


def test_display_names_come_from_registry_and_catalog():
    from asge.data.catalog import DATASETS
    from asge.methods import list_methods, method_class

    for m in list_methods():
        assert wfutil.method_name(m) == method_class(m).display_name
    assert wfutil.method_name("dtg-ff") == "DTG-FF" and wfutil.method_name("new") == "new"
    assert [wfutil.dataset_name(d) for d in DATASETS] == ["MNIST", "FashionMNIST", "CIFAR-10", "CIFAR-100",
                                                          "ImageNet"]
    assert wfutil.dataset_classes("cifar100") == 100
    for script in ("tables.py", "figures.py", "aggregate.py"):  # no copies of the names in scripts
        text = (REPO / "workflow" / "scripts" / script).read_text()
        assert '"CIFAR-10"' not in text and '"CwC-FF"' not in text, script


def test_aggregate_reads_the_schema(tmp_path):
    dirs = [fake_run(tmp_path, "main", "asge-mnist-s0", "asge", 0.9),
            fake_run(tmp_path, "main", "bp-mnist-s0", "bp", 0.8, {"device": "cuda", "gpu": "NVIDIA H200"})]
    df = aggregate.aggregate(dirs)
    assert set(COST_FIELDS) <= set(df.columns) and list(df["compile_time_s"]) == [3.0, 3.0]
    assert list(df["hardware"]) == [hardware_label({"cpu": "x86_64", "threads": 2}), "NVIDIA H200"]
    assert list(df["cfg_channels"]) == ["[4, 8]", "[4, 8]"]


def test_one_function_per_table_and_one_formatter(tmp_path):
    dirs = [fake_run(tmp_path, "main", "asge-mnist-s0", "asge", 0.9), fake_run(tmp_path, "main", "bp-mnist-s0", "bp", 0.8)]
    runs = aggregate.aggregate(dirs)
    assert set(tables.TABLES) == set(tables.TITLES) == {"T1_main", "T2_strategies", "T3_pooling", "T4_alpha",
                                                        "T5_imagenet", "T6_cost", "T8_variants", "T9_paired"}
    t1 = tables.build("T1_main", runs, CFG)
    assert list(t1.show["Method"].unique()) == ["ASGE", "BP", "DTG-FF"]
    assert list(t1.show["Data set"].unique()) == ["MNIST", "CIFAR-10"]
    row = t1.data.set_index(["method", "dataset"]).loc[("dtg-ff", "cifar10")]
    assert row["status"] == "not run (not in this suite)" and row["reported"] == 91.8
    assert t1.data.loc[0, "measured_mean"] == pytest.approx(90.0)
    for name in tables.TABLES:  # every table builds, also without ablation runs
        table = tables.build(name, runs, CFG)
        assert len(table.show) == len(table.data), name
    paths = {fmt: str(tmp_path / f"T1_main.{fmt}") for fmt in ("md", "tex", "csv", "html")}
    tables.write("T1_main", t1, paths)
    assert (tmp_path / "T1_main.md").read_text().startswith("**T1. Main comparison")
    assert "\\toprule" in (tmp_path / "T1_main.tex").read_text()
    csv = pd.read_csv(paths["csv"])
    assert csv.columns[0] == "method" and {"ci95_low", "ci95_high", "n"} <= set(csv.columns)
    assert csv["ci95_low"].isna().all()  # one seed per cell: no interval, "–" in the display
    assert set(t1.show["95 % CI (bootstrap)"]) == {"–"}
    assert any("n = 1: one seed gives no interval" in n for n in t1.notes)
    assert "<td>ASGE</td>" in (tmp_path / "T1_main.html").read_text()


def main_runs(accs: dict[tuple[str, str], dict[int, float]]) -> pd.DataFrame:
    """runs.csv rows of the main study: {(method, data set): {seed: test accuracy}}."""
    return pd.DataFrame([{"study": "main", "run": f"{m}-{d}-s{s}", "method": m, "dataset": d, "seed": s,
                          "variant": None, "epochs": 2, "strategy": "fusion" if m == "asge" else "last",
                          "is_primary": True, "test_acc": acc, "hardware": "CPU"}
                         for (m, d), by_seed in accs.items() for s, acc in by_seed.items()])


def test_t1_gives_a_reproducible_bootstrap_interval_over_seeds(tmp_path):
    runs = main_runs({("asge", "mnist"): {0: 0.90, 1: 0.92, 2: 0.91}, ("bp", "mnist"): {0: 0.95}})
    cfg = {**CFG, "reported": []}
    t1 = tables.build("T1_main", runs, cfg)
    row = t1.data.set_index(["method", "dataset"]).loc[("asge", "mnist")]
    assert row["n"] == 3 and row["ci95_low"] <= row["measured_mean"] <= row["ci95_high"]
    assert 90.0 <= row["ci95_low"] < row["ci95_high"] <= 92.0
    shown = t1.show.set_index(["Method", "Data set"])["95 % CI (bootstrap)"]
    assert shown[("ASGE", "MNIST")] == f"[{row['ci95_low']:.2f}, {row['ci95_high']:.2f}]"
    assert shown[("BP", "MNIST")] == "–" and shown[("ASGE", "CIFAR-10")] == "–"  # n = 1, not run
    paths = [{fmt: str(tmp_path / f"{k}.{fmt}") for fmt in ("md", "tex", "csv", "html")} for k in "ab"]
    for p in paths:  # built and written twice: the same bytes
        tables.write("T1_main", tables.build("T1_main", runs, cfg), p)
    for fmt in ("md", "tex", "csv", "html"):
        assert Path(paths[0][fmt]).read_bytes() == Path(paths[1][fmt]).read_bytes(), fmt


def test_t9_pairs_asge_with_each_baseline_by_seed(tmp_path):
    base = {0: 0.881, 1: 0.904, 2: 0.897}
    runs = main_runs({("asge", "mnist"): {s: a + 0.02 for s, a in base.items()}, ("bp", "mnist"): base,
                      ("ff", "mnist"): {0: 0.80, 5: 0.81}, ("cwc", "mnist"): {3: 0.85},
                      ("asge", "cifar10"): {0: 0.6}, ("bp", "cifar10"): {0: 0.7, 1: 0.72}})
    cfg = {**CFG, "methods": ["asge", "ff", "cwc", "bp"], "reported": [],
           "not_run": [{"method": "ff", "dataset": "cifar10", "reason": "too slow"}]}
    t9 = tables.build("T9_paired", runs, cfg)
    rows = t9.data.set_index(["dataset", "baseline"])
    assert list(rows.index) == [(d, m) for d in ("mnist", "cifar10") for m in ("ff", "cwc", "bp")]
    bp = rows.loc[("mnist", "bp")]  # ASGE = BP + 2 points on every seed
    assert bp["status"] == "measured" and bp["n"] == 3 and bp["seeds"] == "0, 1, 2"
    assert (bp["diff_mean"], bp["ci95_boot_low"], bp["ci95_boot_high"]) == (2.0, 2.0, 2.0)
    assert (bp["ci95_t_low"], bp["ci95_t_high"]) == (2.0, 2.0) and bp["reference_ahead"] == 3
    ff = rows.loc[("mnist", "ff")]  # one shared seed: a difference, no interval
    assert ff["n"] == 1 and ff["diff_mean"] == pytest.approx(0.881 * 100 + 2 - 80) and pd.isna(ff["ci95_boot_low"])
    assert ff["seeds_unpaired"] == "1, 2, 5"
    assert rows.loc[("mnist", "cwc"), "status"] == "no shared seeds" and rows.loc[("mnist", "cwc"), "n"] == 0
    assert rows.loc[("cifar10", "ff"), "status"] == "FF not run (too slow)"
    assert rows.loc[("cifar10", "cwc"), "status"] == "CwC-FF not run"
    assert rows.loc[("cifar10", "bp"), "n"] == 1 and rows.loc[("cifar10", "bp"), "diff_mean"] == pytest.approx(-10.0)
    show = t9.show.set_index(["Data set", "Baseline"])
    assert show.loc[("MNIST", "BP"), "95 % CI (paired bootstrap)"] == "[2.00, 2.00]"
    assert show.loc[("MNIST", "FF"), "95 % CI (t)"] == "–" and show.loc[("MNIST", "FF"), "n (shared seeds)"] == 1
    assert show.loc[("MNIST", "CwC-FF"), "Δ (pp)"] == "no shared seeds"
    assert show.loc[("MNIST", "CwC-FF"), "Seeds"] == "ASGE: 0, 1, 2; CwC-FF: 3"
    assert show.loc[("CIFAR-10", "FF"), "Δ (pp)"] == "FF not run (too slow)"
    assert any("paired bootstrap" in n and "fixed seed" in n for n in t9.notes)
    paths = {fmt: str(tmp_path / f"T9_paired.{fmt}") for fmt in ("md", "tex", "csv", "html")}
    tables.write("T9_paired", t9, paths)
    assert (tmp_path / "T9_paired.md").read_text().startswith("**T9. ASGE against each baseline, paired by seed")
    alone = tables.build("T9_paired", runs, {**cfg, "methods": ["asge"]})  # no baseline: no row, said so
    assert alone.data.empty and "No baseline among this preset's methods: no pair." in alone.notes
    tables.write("T9_paired", alone, paths)


def test_t9_pairs_asge_with_every_strategy_of_a_baseline():
    """CwC-FF's GA (primary) and its Sf head each get a row, the primary first, whatever their
    accuracies (no strategy is chosen on the test set)."""
    runs = main_runs({("asge", "mnist"): {0: 0.97, 1: 0.98}, ("cwc", "mnist"): {0: 0.96, 1: 0.96}})
    runs.loc[runs["method"] == "cwc", "strategy"] = "ga"
    sf = runs[runs["method"] == "cwc"].assign(strategy="sf", is_primary=False, test_acc=0.99)
    cfg = {**CFG, "methods": ["asge", "cwc"], "datasets": ["mnist"], "reported": []}
    t9 = tables.build("T9_paired", pd.concat([runs, sf], ignore_index=True), cfg)
    assert list(t9.data["baseline_strategy"]) == ["ga", "sf"]
    assert list(t9.data["diff_mean"]) == [pytest.approx(1.5), pytest.approx(-1.5)]
    assert list(t9.show["Strategy"]) == ["ga", "sf"] and set(t9.data["n"]) == {2}


def test_the_workflow_lists_every_table_with_a_caption():
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    for name in tables.TABLES:
        assert f'"{name}": (' in common, name
        assert (REPO / "workflow" / "report" / f"{name}.rst").is_file(), name
    assert '"T9_paired": ("T9. ASGE against each baseline, paired by seed", "Tables")' in common


def test_identical_alpha_patch_counts_are_noted():
    base = {"study": "ablations", "method": "asge", "dataset": "mnist", "seed": 0, "epochs": 1, "hardware": "CPU",
            "cfg_pooling": "rms", "is_primary": True, "goodness_dims_total": 48, "patches": "[1, 1, 1, 1]",
            "cfg_subset_per_class": None, "cfg_test_subset_per_class": None}
    runs = pd.DataFrame([
        {**base, "run": "a0", "variant": "alpha_0", "cfg_alpha": 0.0, "strategy": "fusion", "test_acc": 0.5},
        {**base, "run": "a05", "variant": "alpha_05", "cfg_alpha": 0.5, "strategy": "fusion", "test_acc": 0.5},
        {**base, "run": "ref", "variant": "reference", "cfg_alpha": 1.0, "strategy": "fusion", "test_acc": 0.6,
         "patches": "[2, 2, 1, 1]"}])
    cfg = {**CFG, "methods": ["asge"], "datasets": ["mnist"], "reported": []}
    t = tables.build("T4_alpha", runs, cfg)
    assert any("α = 0 and α = 0.5 give the same patch counts P_l = 1 / 1 / 1 / 1" in n for n in t.notes), t.notes
    assert not any("α = 1" in n and "same patch counts" in n for n in t.notes)
    assert list(t.show["Patches P_l per layer"][:3]) == ["1 / 1 / 1 / 1", "1 / 1 / 1 / 1", "2 / 2 / 1 / 1"]


def test_fig4_reads_the_goodness_of_diagnostics(tmp_path, monkeypatch):
    import torch

    d = fake_run(tmp_path, "main", "asge-mnist-s0", "asge", 0.9)
    g = {}
    for layer, c in ((2, 8), (4, 16)):
        g[f"layer{layer}_channels"] = c
        for k in ("origin", "rms", "avg", "max"):
            g[f"layer{layer}_{k}"] = torch.rand(200) + 0.01
    torch.save({"goodness": g}, d / "diagnostics.pt")
    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, png, pdf: drawn.append(fig))
    assert figures.fig4(str(d / "diagnostics.pt"), "x.png", "x.pdf") == [4, 2]
    assert "MNIST" in drawn[0]._suptitle.get_text() and "CPU x86_64, threads=2" in drawn[0]._suptitle.get_text()
