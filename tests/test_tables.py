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
import runs_schema  # noqa: E402
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
                                                        "T5_imagenet", "T6_cost", "T8_variants", "T9_paired",
                                                        "T10_budget", "T11_convergence", "T12_width"}
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


def as_runs(rows: list[dict]) -> pd.DataFrame:
    """Rows as runs.csv holds them: every column of the schema (those not given empty)."""
    return pd.DataFrame(rows).reindex(columns=list(runs_schema.RUNS_COLUMNS))


def main_runs(accs: dict[tuple[str, str], dict[int, float]]) -> pd.DataFrame:
    """runs.csv rows of the main study: {(method, data set): {seed: test accuracy}}."""
    return as_runs([{"study": "main", "run": f"{m}-{d}-s{s}", "method": m, "dataset": d, "seed": s,
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


def test_one_table_list_every_table_with_a_builder_and_a_caption():
    import table_registry

    assert list(tables.BUILDERS) and set(tables.BUILDERS) == set(table_registry.TABLES)
    for name, spec in table_registry.TABLES.items():
        assert (REPO / "workflow" / "report" / f"{name}.rst").is_file(), name
        assert spec.title.startswith(name.split("_")[0] + ". ") and spec.category in ("Tables", "Cost"), spec
    # the rules read the registry instead of keeping a second list
    common = (REPO / "workflow" / "rules" / "common_outputs.smk").read_text()
    assert "_table_registry().TABLES" in common and '"T9_paired"' not in common


def test_identical_alpha_patch_counts_are_noted():
    base = {"study": "ablations", "method": "asge", "dataset": "mnist", "seed": 0, "epochs": 1, "hardware": "CPU",
            "cfg_pooling": "rms", "is_primary": True, "goodness_dims_total": 48, "patches": "[1, 1, 1, 1]",
            "cfg_subset_per_class": None, "cfg_test_subset_per_class": None}
    runs = as_runs([
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


def test_t1_puts_the_t_interval_first_with_n_and_the_parameter_count():
    """Issue #26: with 2-3 seeds the bootstrap interval is only the seeds' range, so T1's primary
    interval is Student t (n beside it), and every row says how large the method's net is."""
    runs = main_runs({("asge", "mnist"): {0: 0.90, 1: 0.92, 2: 0.91}, ("bp", "mnist"): {0: 0.95}})
    runs["params_total"] = [730_000 if m == "asge" else 62_000 for m in runs["method"]]
    t1 = tables.build("T1_main", runs, {**CFG, "reported": []})
    cols = list(t1.show.columns)
    assert cols.index("95 % CI (t)") < cols.index("95 % CI (bootstrap)")
    row = t1.data.set_index(["method", "dataset"]).loc[("asge", "mnist")]
    half = 4.302653 * 1.0 / 3 ** 0.5  # t(0.975, 2) · s / √n with s = 1 point
    assert (row["ci95_t_low"], row["ci95_t_high"]) == (pytest.approx(91 - half), pytest.approx(91 + half))
    assert row["ci95_t_low"] < row["ci95_low"]  # the bootstrap is narrower than the t-interval here
    shown = t1.show.set_index(["Method", "Data set"])
    assert shown.loc[("ASGE", "MNIST"), "95 % CI (t)"] == f"[{91 - half:.2f}, {91 + half:.2f}] (n=3)"
    assert shown.loc[("BP", "MNIST"), "95 % CI (t)"] == "–"  # one seed
    assert shown.loc[("ASGE", "MNIST"), "Params"] == "730.00k" and shown.loc[("BP", "MNIST"), "Params"] == "62.00k"
    assert any(n.startswith("95 % CI (t), the primary interval") for n in t1.notes)


def test_t9_shows_the_t_interval_first():
    runs = main_runs({("asge", "mnist"): {0: 0.92, 1: 0.93}, ("bp", "mnist"): {0: 0.90, 1: 0.90}})
    t9 = tables.build("T9_paired", runs, {**CFG, "methods": ["asge", "bp"], "datasets": ["mnist"], "reported": []})
    cols = list(t9.show.columns)
    assert cols.index("95 % CI (t)") < cols.index("95 % CI (paired bootstrap)")
    half = 12.706205 * (0.5 * 2 ** 0.5) / 2 ** 0.5  # differences 2 and 3 points: s = 0.707, n = 2
    assert t9.show.loc[0, "95 % CI (t)"] == f"[{2.5 - half:.2f}, {2.5 + half:.2f}] (n=2)"


def write_history(run_dir: Path, best_per_epoch: list[float]) -> None:
    """history.csv of a two-readout run whose better readout reaches these validation accuracies."""
    cost = {"train_loss": 0.5, "epoch_time_s": 10.0, "images_per_s": 100.0, "lr": 0.01, "peak_memory_bytes": 0}
    rows = [{"epoch": e + 1, "readout": r, "val_acc": v - (0.1 if r == "layer1" else 0.0), **cost}
            for e, v in enumerate(best_per_epoch) for r in ("layer1", "layer2")]
    pd.DataFrame(rows).to_csv(run_dir / "history.csv", index=False)


def test_t11_says_which_runs_flattened(tmp_path):
    """The convergence check of issue #26: the best validation accuracy may rise by less than
    0.3 points over the last 3 epochs; shorter runs can only show that they still rise."""
    flat = fake_run(tmp_path, "main", "asge-mnist-s0", "asge", 0.9)
    write_history(flat, [0.80, 0.85, 0.870, 0.871, 0.8725, 0.8710])  # +0.25 pp over epochs 4-6
    rising = fake_run(tmp_path, "main", "bp-mnist-s0", "bp", 0.9)
    write_history(rising, [0.80, 0.85, 0.86, 0.87, 0.88, 0.89])      # +3 pp
    short = fake_run(tmp_path, "main", "asge-mnist-s1", "asge", 0.9)
    write_history(short, [0.80, 0.8001])                              # 2 epochs: +0.01 pp over 1 epoch
    runs = aggregate.aggregate([flat, rising, short])
    got = runs.drop_duplicates("run").set_index("run")
    assert got.loc["asge-mnist-s0", "val_gain_last3"] == pytest.approx(0.25)
    assert got.loc["asge-mnist-s0", "val_best"] == pytest.approx(0.8725)
    assert got.loc["bp-mnist-s0", "val_gain_last3"] == pytest.approx(3.0)
    assert got.loc["asge-mnist-s1", "val_gain_epochs"] == 1
    t11 = tables.build("T11_convergence", runs, CFG)
    status = t11.show.set_index("Run")["Converged"]
    assert status["asge-mnist-s0"] == "flat" and status["bp-mnist-s0"] == "still rising"
    assert status["asge-mnist-s1"] == "too few epochs to tell"
    assert list(t11.data.set_index("run")["flat"]) == [True, False, False]
    assert any("1 of 3 runs here" in n for n in t11.notes)


def test_t10_gives_the_gap_to_bp_at_both_budgets():
    short = main_runs({("asge", "mnist"): {0: 0.90, 1: 0.91}, ("bp", "mnist"): {0: 0.95, 1: 0.95}})
    long = main_runs({("asge", "mnist"): {0: 0.97, 1: 0.99}, ("bp", "mnist"): {0: 0.98, 1: 0.99}})
    long["epochs"] = 20
    cfg = {**CFG, "datasets": ["mnist"], "budget_reference": "short/runs.csv",
           "reported": [{"method": "asge", "dataset": "mnist", "metric": "top1", "value": 99.65, "source": "x"}]}
    t10 = tables.build("T10_budget", long, cfg, budget_runs=short)
    asge = t10.data.set_index("method").loc["asge"]
    assert asge["short_gap"] == pytest.approx(-4.5) and asge["converged_gap"] == pytest.approx(-0.5)
    assert asge["short_gap_n"] == 2 and asge["converged_epochs"] == "20" and asge["short_epochs"] == "2"
    row = t10.show.set_index("Method").loc["ASGE"]
    assert row["Gap change (pp)"] == "+4.00" and row["Converged − reported"] == "-1.65"
    gap = row["Converged: − BP (pp, 95 % CI t)"]
    assert gap.startswith("-0.50 [") and gap.endswith("(n=2)")
    assert t10.show.set_index("Method").loc["BP", "Converged: − BP (pp, 95 % CI t)"] == "–"


def width_runs(accs: dict[tuple[str, int], dict[int, float]]) -> pd.DataFrame:
    """runs.csv rows of ASGE and BP on CIFAR-10 at widths of VGG8: {(method, width divisor): {seed:
    test accuracy}}; divisor 4 is the main study's runs, the others the width study's."""
    full = [128, 128, 256, 256, 512, 512, 512, 512]
    return as_runs([{"study": "main" if k == 4 else "width", "run": f"{m}-cifar10-w{k}-s{s}", "method": m,
                     "dataset": "cifar10", "seed": s, "variant": None if k == 4 else f"w{k}", "epochs": 20,
                     "strategy": "fusion" if m == "asge" else "last", "is_primary": True, "test_acc": acc,
                     "hardware": "CPU", "cfg_channels": json.dumps([c // k for c in full]), "cfg_width": 1.0,
                     "params_total": 700_000 * 16 // k**2}
                    for (m, k), by_seed in accs.items() for s, acc in by_seed.items()])


WIDTH_CFG = {**CFG, "methods": ["asge", "bp"], "datasets": ["cifar10"],
             "width": {"methods": ["asge", "bp"], "dataset": "cifar10", "seeds": [0, 1], "variants": {"w8": {}}},
             "run_files": {f"{m}/cifar10": json.dumps({"channels": [128, 128, 256, 256, 512, 512, 512, 512]})
                           for m in ("asge", "bp")},
             "reported": [{"method": "asge", "dataset": "cifar10", "metric": "top1", "value": 90.62, "source": "x"}]}


def test_t12_sets_the_widths_side_by_side_and_labels_the_extrapolation(tmp_path):
    """Issue #26, item 4: per width the accuracy and the gap to BP paired by seed; the main study's
    runs are the preset's own width; the line in log2(width) is carried to the paper's width and
    labelled as an extrapolation; the figure draws the table's numbers."""
    import figures_width

    runs = width_runs({("asge", 8): {0: 0.60, 1: 0.62}, ("asge", 4): {0: 0.70, 1: 0.72},
                       ("bp", 8): {0: 0.80, 1: 0.81}, ("bp", 4): {0: 0.85, 1: 0.86}})
    t12 = tables.build("T12_width", runs, WIDTH_CFG)
    d = t12.data.set_index(["method", "kind", "width"])
    assert d.loc[("asge", "measured", 0.125), "mean"] == pytest.approx(61.0)
    assert d.loc[("asge", "measured", 0.25), "gap"] == pytest.approx(-14.5)  # paired: -15, -14
    assert d.loc[("asge", "measured", 0.125), "gap_n"] == 2
    ext = d.loc[("asge", "extrapolation", 1.0)]
    assert ext["per_doubling"] == pytest.approx(10.0) and ext["mean"] == pytest.approx(91.0)  # 71 + 2 doublings
    assert ext["last_doubling"] == pytest.approx(10.0) and ext["max_residual"] == pytest.approx(0.0)
    assert ext["gap"] == pytest.approx(91.0 - 95.5) and ext["reported"] == 90.62  # BP: +5 per doubling
    shown = t12.show.set_index(["Method", "Width"])
    assert shown.loc[("ASGE", "1/8"), "Channels"] == "16-16-32-32-64-64-64-64"
    assert shown.loc[("ASGE", "1"), "Test acc. (%)"].startswith("91.0 (extrapolation")
    assert shown.loc[("ASGE", "1"), "− BP (pp, 95 % CI t)"] == "-4.50 (extrapolation)"
    assert any("not a measurement" in n for n in t12.notes)
    assert "vs. main epochs (pp, 95 % CI t)" not in t12.show  # no budget check planned: no column of dashes
    paths = {fmt: str(tmp_path / f"T12_width.{fmt}") for fmt in ("md", "tex", "csv", "html")}
    tables.write("T12_width", t12, paths)
    shown = figures_width.fig_width(paths["csv"], str(tmp_path / "w.png"), str(tmp_path / "w.pdf"))
    assert shown["asge"] == [(0.125, pytest.approx(61.0)), (0.25, pytest.approx(71.0))]
    assert (tmp_path / "w.png").stat().st_size > 10_000 and (tmp_path / "w.pdf").exists()


def test_t12_fits_a_line_through_three_widths_and_says_how_straight_it_is():
    runs = width_runs({("asge", 16): {0: 0.50}, ("asge", 8): {0: 0.62}, ("asge", 4): {0: 0.70},
                       ("bp", 16): {0: 0.75}, ("bp", 8): {0: 0.80}, ("bp", 4): {0: 0.85}})
    ext = tables.build("T12_width", runs, WIDTH_CFG).data.set_index(["method", "kind"]).loc[("asge", "extrapolation")]
    assert ext["per_doubling"] == pytest.approx(10.0) and ext["last_doubling"] == pytest.approx(8.0)
    assert ext["max_residual"] == pytest.approx(4 / 3) and ext["n"] == 3  # line 50.67, 60.67, 70.67


def test_t12_keeps_a_budget_check_off_the_line_and_gives_its_gain(tmp_path):
    """A width-study variant at more epochs is a budget check: its own row, with its gap to BP at
    the same width and epochs and its gain over the same width at the main epochs, paired by seed;
    the line and the figure's width curve use the main epochs only."""
    import figures_width

    base = width_runs({("asge", 8): {0: 0.60, 1: 0.62}, ("asge", 4): {0: 0.70, 1: 0.72},
                       ("bp", 8): {0: 0.80, 1: 0.81}, ("bp", 4): {0: 0.85, 1: 0.86}})
    longer = width_runs({("asge", 8): {0: 0.64}, ("bp", 8): {0: 0.805}}).assign(epochs=40)
    t12 = tables.build("T12_width", pd.concat([base, longer], ignore_index=True), WIDTH_CFG)
    d = t12.data.set_index(["method", "kind", "width"])
    row = d.loc[("asge", "budget", 0.125)]
    assert row["epochs"] == 40 and row["epoch_gain"] == pytest.approx(4.0) and row["epoch_gain_n"] == 1
    assert row["gap"] == pytest.approx(-16.5) and row["gap_n"] == 1
    ext = d.loc[("asge", "extrapolation", 1.0)]  # the same line as without the budget check
    assert ext["per_doubling"] == pytest.approx(10.0) and ext["mean"] == pytest.approx(91.0) and ext["epochs"] == 20
    shown = t12.show.set_index(["Method", "Width", "Epochs"])
    assert shown.loc[("ASGE", "1/8", "40"), "vs. main epochs (pp, 95 % CI t)"] == "+4.00 (n=1, no interval)"
    assert shown.loc[("ASGE", "1/8", "40"), "− BP (pp, 95 % CI t)"] == "-16.50 (n=1, no interval)"
    assert any("budget check" in n for n in t12.notes)
    paths = {fmt: str(tmp_path / f"T12_width.{fmt}") for fmt in ("md", "tex", "csv", "html")}
    tables.write("T12_width", t12, paths)
    drawn = figures_width.fig_width(paths["csv"], str(tmp_path / "w.png"), str(tmp_path / "w.pdf"))
    assert drawn["asge"] == [(0.125, pytest.approx(61.0)), (0.25, pytest.approx(71.0))]


def test_t12_without_a_second_width_gives_no_extrapolation():
    t12 = tables.build("T12_width", width_runs({("asge", 4): {0: 0.70}, ("bp", 4): {0: 0.85}}), WIDTH_CFG)
    assert list(t12.data["kind"]) == ["measured", "measured"] and t12.data["per_doubling"].isna().all()


def test_t3_takes_the_main_runs_as_reference_when_the_preset_plans_none():
    """The converged preset does not train ASGE's FashionMNIST runs twice: T3's RMS row is the
    main study's runs of the ablated method and data set at the ablation's seeds."""
    base = {"method": "asge", "dataset": "fashionmnist", "epochs": 20, "hardware": "CPU", "cfg_alpha": 1.0,
            "is_primary": True, "strategy": "fusion", "cfg_subset_per_class": None, "cfg_test_subset_per_class": None}
    rows = [{**base, "study": "main", "run": f"asge-fashionmnist-s{s}", "variant": None, "seed": s,
             "cfg_pooling": "rms", "test_acc": 0.90 + s / 100} for s in (0, 1, 2)]
    rows += [{**base, "study": "ablations", "run": f"asge-fashionmnist-pool_{p}-s{s}", "variant": f"pool_{p}",
              "seed": s, "cfg_pooling": p, "test_acc": 0.89} for p in ("avg", "max") for s in (0, 1)]
    cfg = {**CFG, "methods": ["asge"], "datasets": ["fashionmnist"], "reported": [],
           "ablations": {"method": "asge", "dataset": "fashionmnist", "seeds": [0, 1],
                         "variants": {"pool_avg": {"pooling": "avg"}, "pool_max": {"pooling": "max"}}}}
    t3 = tables.build("T3_pooling", as_runs(rows), cfg)
    rms = t3.data.set_index("pooling").loc["rms"]
    assert rms["fusion_n"] == 2 and rms["fusion_acc_mean"] == pytest.approx(90.5)  # seeds 0 and 1 only
    assert t3.data.set_index("pooling").loc["max", "fusion_n"] == 2
    assert any("main study's runs" in n for n in t3.notes)


def test_an_empty_study_writes_every_column_and_builds_every_table(tmp_path):
    """No finished run (issue #27): runs.csv is its header, read back with every column, and every
    table of the registry builds from it; each cell says "not run", T10 and T11 have no row."""
    import table_registry
    from asge.atomic import write_csv

    path = tmp_path / "runs.csv"
    write_csv(path, aggregate.aggregate([]))
    assert path.read_text() == ",".join(runs_schema.RUNS_COLUMNS) + "\n"
    runs = runs_schema.read_runs(path)
    assert runs.empty and list(runs.columns) == list(runs_schema.RUNS_COLUMNS)
    cfg = {**CFG, "budget_reference": "short/runs.csv",
           "ablations": {"method": "asge", "dataset": "mnist", "seeds": [0],
                         "variants": {"reference": {}, "pool_avg": {"pooling": "avg"}, "alpha_0": {"alpha": 0.0}}}}
    for name in table_registry.TABLES:
        table = tables.build(name, runs, cfg, budget_runs=runs)
        assert len(table.show) == len(table.data), name
        if name in ("T10_budget", "T11_convergence", "T12_width"):  # a row per run (T12: no width study): none
            assert table.data.empty, name
        else:  # a row per configured cell, every one not run
            assert len(table.data) and all("not run" in s for s in table.data["status"]), (name, table.data)
        tables.write(name, table, {fmt: str(tmp_path / f"{name}.{fmt}") for fmt in ("md", "tex", "csv", "html")})
    t1 = tables.build("T1_main", runs, cfg).data.set_index(["method", "dataset"])
    assert t1.loc[("dtg-ff", "cifar10"), "status"] == "not run (not in this suite)" and t1["n"].eq(0).all()
    assert any("0 of 0 runs here" in n for n in tables.build("T11_convergence", runs, cfg).notes)
    assert list(aggregate.display(runs)["runs"]) == ["no finished run"]


def test_read_runs_names_the_missing_column_and_the_file(tmp_path):
    committed = pd.read_csv(REPO / "results" / "reference" / "tables" / "runs.csv")
    old = tmp_path / "runs.csv"
    committed.drop(columns=["val_acc", "cfg_theta"]).to_csv(old, index=False)
    with pytest.raises(ValueError) as err:
        runs_schema.read_runs(old)
    message = str(err.value)
    assert str(old) in message and "cfg_theta, val_acc" in message and "--forcerun aggregate" in message
    old.write_text("")  # an empty study's runs.csv before the column list
    with pytest.raises(ValueError, match="lacks the runs.csv column.s. study, run, method"):
        runs_schema.read_runs(old)
    committed.assign(extra=1).to_csv(old, index=False)  # a column not in the list is not read
    assert list(runs_schema.read_runs(old).columns) == list(runs_schema.RUNS_COLUMNS)


def test_the_column_list_is_the_committed_header_and_what_aggregate_writes(tmp_path, monkeypatch):
    header = (REPO / "results" / "reference" / "tables" / "runs.csv").read_text().splitlines()[0]
    assert header.split(",") == list(runs_schema.RUNS_COLUMNS)
    assert runs_schema.COST == COST_FIELDS
    assert runs_schema.CONFIG == tuple(f"cfg_{k}" for k in aggregate.CONFIG_COLUMNS)
    dirs = [fake_run(tmp_path, "main", "asge-mnist-s0", "asge", 0.9)]
    assert list(aggregate.aggregate(dirs).columns) == list(runs_schema.RUNS_COLUMNS)
    rows = aggregate.run_rows  # a column that the list does not declare fails, named
    monkeypatch.setattr(aggregate, "run_rows", lambda d: [{**r, "new_col": 1} for r in rows(d)])
    with pytest.raises(ValueError, match="new_col"):
        aggregate.aggregate(dirs)
