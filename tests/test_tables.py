"""The workflow's table, aggregate and figure scripts on small fake run folders (no training):
display names from the registry and catalog, one function per table plus the formatter, the
metrics schema read through asge.runfolder, Fig. 4 from diagnostics.pt."""
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
                                                        "T5_imagenet", "T6_cost", "T8_variants"}
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
    assert pd.read_csv(paths["csv"]).columns[0] == "method"
    assert "<td>ASGE</td>" in (tmp_path / "T1_main.html").read_text()


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
