"""The `converged` preset (issue #26): it asks for what the issue asks (full training sets,
CIFAR-10 >= 20 epochs at quarter width, FashionMNIST >= 12 epochs at half width or wider, the
seeds per method), validates against the schema, and a dry run plans exactly its runs."""
from __future__ import annotations

from pathlib import Path

import yaml

from tests.test_reference_preset import dry_run_plan, expected_runs

REPO = Path(__file__).resolve().parent.parent
PRESET = REPO / "config" / "presets" / "converged.yaml"
QUARTER_VGG8 = [32, 32, 64, 64, 128, 128, 128, 128]


def load_preset() -> dict:
    return yaml.safe_load(PRESET.read_text())


def run_file(method: str, dataset: str) -> dict:
    return yaml.safe_load((REPO / "config" / "runs" / method / f"{dataset}.yaml").read_text())


def test_preset_matches_the_issue():
    cfg = load_preset()
    assert cfg["results"] == "results/converged" and cfg["mlflow"]["experiment_prefix"] == "converged-"
    assert {"asge", "ff", "cwc", "bp", "bpvgg"} <= set(cfg["methods"])
    assert set(cfg["datasets"]) == {"fashionmnist", "cifar10"}
    assert cfg["budget_reference"] == "results/reference/tables/runs.csv"
    ov = cfg["overrides"]
    flat = [ov["all"], *ov["method"].values(), *ov["dataset"].values(), *ov["method_dataset"].values()]
    assert not any("subset_per_class" in s or "test_subset_per_class" in s for s in flat)  # full training sets
    assert not any(k in s for s in flat for k in ("amp", "channels_last"))  # fp32 NCHW on the CPU (measured)
    assert ov["dataset"]["cifar10"]["epochs"] >= 20 and ov["dataset"]["fashionmnist"]["epochs"] >= 12
    pairs = ov["method_dataset"]
    for m in ("asge", "bp", "bpvgg", "ff"):
        assert pairs[f"{m}/cifar10"]["channels"] == QUARTER_VGG8, m
    for m in ("asge", "bp", "ff", "cwc"):  # half the run files' widths, or wider
        want = run_file(m, "fashionmnist")["channels"]
        assert all(2 * a >= b for a, b in zip(pairs[f"{m}/fashionmnist"]["channels"], want)), m
    # ASGE and BP at the same batch on CIFAR-10 (only the learning rule differs)
    assert pairs["asge/cifar10"]["batch_size"] == pairs["bp/cifar10"]["batch_size"]
    # seeds 0 and 1 for ASGE and BP, 0 for FF, CwC-FF and the conventional VGG on CIFAR-10; 0-1 on
    # FashionMNIST, and a third seed there for all four (the issue's priority 4 names ASGE, BP and
    # CwC-FF; FF's third seed lets T9 pair every comparison over the same three seeds); seeds 3-4
    # for ASGE and CwC-FF, whose comparison three seeds left undecided, and for BP
    assert cfg["seeds"] == [0, 1] and cfg["seeds_by"] == {
        "ff/cifar10": [0], "cwc/cifar10": [0], "bpvgg/cifar10": [0], "asge/fashionmnist": [0, 1, 2, 3, 4],
        "cwc/fashionmnist": [0, 1, 2, 3, 4], "bp/fashionmnist": [0, 1, 2, 3, 4], "ff/fashionmnist": [0, 1, 2]}
    abl = cfg["ablations"]  # T3 at convergence, 2 seeds; the RMS row is the main study's run
    assert abl["dataset"] == "fashionmnist" and len(abl["seeds"]) >= 2
    assert {v["pooling"] for v in abl["variants"].values()} == {"avg", "max"}
    wid = cfg["width"]  # a second width for ASGE and BP on CIFAR-10, both seeds (issue #26, item 4)
    assert set(wid["methods"]) == {"asge", "bp"} and wid["dataset"] == "cifar10" and wid["seeds"] == [0, 1]
    assert all(v["channels"] != QUARTER_VGG8 and len(v["channels"]) == 8 for v in wid["variants"].values())
    assert wid["seeds_by"] == {"half": [0]}  # the costliest width: one seed
    assert wid["variants"]["eighth_e40"] == {**wid["variants"]["eighth"], "epochs": 40}  # only the budget differs
    assert cfg["resources"]["gpu"] == 0 and cfg["require_gpu"] is False


def test_preset_validates_and_plans_every_run(tmp_path):
    planned, out = dry_run_plan("converged", tmp_path / "results")
    assert planned == expected_runs(load_preset()) and len(planned) == 43, out[-4000:]
    for name in ("T10_budget", "T11_convergence", "fig_budget"):  # the budget table and figure are planned
        assert name in out, name
