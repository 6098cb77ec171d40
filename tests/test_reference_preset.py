"""The `reference` preset (issue #15): it loads, validates against the workflow schema, and a
dry run from the repository root plans exactly its training runs (nothing is trained or
written into the repository: the results go to a temporary folder, `-n` runs no job).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PRESET = REPO / "config" / "presets" / "reference.yaml"


def load_preset() -> dict:
    return yaml.safe_load(PRESET.read_text())


def expected_runs(cfg: dict) -> set[tuple[str, str]]:
    """(study, run name) as workflow/rules/common.smk planned_runs() names them."""
    skip = {(i["method"], i["dataset"]) for i in cfg.get("not_run") or []}
    runs = {("main", f"{m}-{d}-s{s}") for m in cfg["methods"] for d in cfg["datasets"] if (m, d) not in skip
            for s in (cfg.get("seeds_by") or {}).get(f"{m}/{d}", (cfg.get("seeds_by") or {}).get(d, cfg["seeds"]))}
    abl = cfg.get("ablations") or {}
    runs |= {("ablations", f"{abl['method']}-{abl['dataset']}-{v}-s{s}") for v in abl.get("variants") or {}
             for s in abl["seeds"]}
    wid = cfg.get("width") or {}
    runs |= {("width", f"{m}-{wid['dataset']}-{v}-s{s}") for v in wid.get("variants") or {} for m in wid["methods"]
             for s in (wid.get("seeds_by") or {}).get(v, wid["seeds"])}
    return runs


def dry_run_plan(preset: str, results: Path) -> tuple[set[tuple[str, str]], str]:
    """(the (study, run) of every planned train job, the output) of `snakemake -n --config
    preset=<preset>` from the repository root, the results redirected to `results`."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(OMP_WAIT_POLICY="PASSIVE", MLFLOW_DISABLE_TELEMETRY="true", PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "snakemake", "-n", "--nolock", "--cores", "2", "--config", f"preset={preset}",
           f"results={results}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return set(re.findall(r"rule train:\n(?:    .*\n)*?    wildcards: study=(\w+), run=([\w.-]+)", out)), out


def test_preset_matches_the_issue():
    cfg = load_preset()
    assert cfg["results"] == "results/reference"
    assert cfg["mlflow"]["experiment_prefix"] == "reference-"
    assert {"asge", "ff", "cwc", "bp"} <= set(cfg["methods"])
    assert set(cfg["datasets"]) == {"mnist", "fashionmnist", "cifar10"}
    assert len(cfg["seeds"]) >= 3
    by = cfg["seeds_by"]  # CIFAR-10: >= 2 seeds for ASGE and BP, >= 1 for FF and CwC-FF
    assert len(by["asge/cifar10"]) >= 2 and len(by["bp/cifar10"]) >= 2 and by["ff/cifar10"] and by["cwc/cifar10"]
    assert cfg["resources"]["gpu"] == 0 and cfg["resources"]["threads"] == 1
    assert cfg["require_gpu"] is False
    assert cfg["figures"] == {"dataset": "cifar10", "seed": 0}
    # full training sets: no subset anywhere
    layers = [cfg["overrides"].get("all") or {}, *(cfg["overrides"].get(k) or {} for k in ("method", "dataset"))]
    flat = [layers[0], *(v for layer in layers[1:] for v in layer.values())]
    flat += list((cfg["overrides"].get("method_dataset") or {}).values())
    assert not any("subset_per_class" in (s or {}) or "test_subset_per_class" in (s or {}) for s in flat)
    variants = cfg["ablations"]["variants"]
    assert {"reference", "pool_avg", "pool_max"} <= set(variants)            # T3
    assert sum(1 for v in variants.values() if v and "alpha" in v) >= 2     # T4
    assert len(cfg["ablations"]["seeds"]) == 1


def test_preset_validates_and_plans_every_run(tmp_path):
    """`snakemake -n --config preset=reference` from the repository root: the schema and every
    run's resolved config are checked when the Snakefile loads (common.smk validate_runs), and
    the dry run lists one train job per planned run."""
    planned, out = dry_run_plan("reference", tmp_path / "results")
    assert planned == expected_runs(load_preset()), out[-4000:]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("metrics.json"))
