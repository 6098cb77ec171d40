"""End to end: the whole Snakemake DAG on the `tiny` preset, on a CPU, in a temporary copy of
the workflow, with MNIST/FashionMNIST files in the real idx format that this test writes.

Checks: every table and figure is built, MLflow holds every run with its metric history, a
second invocation has nothing to do, changing one method's hyperparameter reruns only that
method's training jobs (params rerun trigger), `snakemake --lint` is clean, and the report
builds. Nothing is written into the repository.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.fakedata import write_idx
from tests.test_reference_preset import dry_run_plan

REPO = Path(__file__).resolve().parent.parent
METHODS = ("asge", "ff", "cwc", "bp")
DATASETS = ("mnist", "fashionmnist")
TABLES = ("T1_main", "T2_strategies", "T3_pooling", "T4_alpha", "T5_imagenet", "T6_cost", "T7_channel_scaling",
          "T8_variants", "T11_convergence")
FIGURES = ("fig1_ff_layers", "fig3_asge_layers", "fig4_goodness", "fig_accuracy_mnist", "fig_accuracy_fashionmnist")


def write_mnist_like(root: Path, folder: str, train_per_class: int, test_per_class: int, seed: int) -> None:
    """<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte: 28x28 noise with a
    bright block whose position encodes the label (learnable, all 10 classes in both parts)."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, k in (("train", train_per_class), ("t10k", test_per_class)):
        y = rng.permutation(np.repeat(np.arange(10), k))
        x = rng.integers(0, 60, size=(len(y), 28, 28))
        for i, label in enumerate(y):
            r, c = divmod(int(label), 5)
            x[i, 4 + 12 * r: 12 + 12 * r, 2 + 5 * c: 7 + 5 * c] = 230
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)


def snakemake(work: Path, data: Path, *args: str, config: tuple[str, ...] = (), timeout: int = 600,
              cores: int | None = 2, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The tiny preset in the workflow copy `work` (cores=None: the profile decides, e.g. SLURM)."""
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env.update(OMP_WAIT_POLICY="PASSIVE", MLFLOW_DISABLE_TELEMETRY="true", PYTHONDONTWRITEBYTECODE="1",
                    **(env or {}))
    cmd = [sys.executable, "-m", "snakemake", *(["--cores", str(cores)] if cores else []), *args,
           "--config", "preset=tiny", f"data_root={data}", "data_mirrors=[]", "offline=true", *config]
    return subprocess.run(cmd, cwd=work, env=full_env, capture_output=True, text=True, timeout=timeout)


def check(proc: subprocess.CompletedProcess) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


def build_tiny(tmp_path_factory):
    """(work copy, data root) after a complete run of the tiny preset; the session fixture
    `tiny` (tests/conftest.py) runs it once for this module and tests/test_views.py."""
    tmp = tmp_path_factory.mktemp("wf")
    work, data = tmp / "repo", tmp / "data"
    work.mkdir()
    for item in ("Snakefile", "workflow", "config", "profiles"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    write_mnist_like(data, "MNIST", 12, 5, seed=0)
    write_mnist_like(data, "FashionMNIST", 12, 5, seed=1)
    check(snakemake(work, data, timeout=1800))  # minutes on a loaded 2-core machine
    return work, data


def test_every_table_and_figure_is_built(tiny):
    work, _ = tiny
    res = work / "results" / "tiny"
    for t in TABLES:
        for fmt in ("md", "tex", "csv"):
            assert (res / "tables" / f"{t}.{fmt}").stat().st_size > 0, f"{t}.{fmt}"
    for f in FIGURES:
        for fmt in ("png", "pdf"):
            assert (res / "figures" / f"{f}.{fmt}").stat().st_size > 1000, f"{f}.{fmt}"
    runs = pd.read_csv(res / "tables" / "runs.csv")
    main = runs[runs["study"] == "main"]
    assert {(m, d) for m, d in zip(main["method"], main["dataset"])} == {(m, d) for m in METHODS for d in DATASETS}
    assert set(runs[runs["study"] == "ablations"]["variant"]) == {"reference", "pool_avg", "alpha_0"}
    assert runs["test_acc"].between(0, 1).all() and (runs["epochs"] == 1).all()
    t1 = (res / "tables" / "T1_main.md").read_text()
    assert re.search(r"\| ASGE \| MNIST \| fusion \| \d+\.\d\d \(n=1\) \| – \| – \| [\d.]+k? \| 0 \| 1 \| CPU", t1)
    assert "| ASGE | CIFAR-10 | – | not run |" in t1 and "99.65" in t1
    t3 = (res / "tables" / "T3_pooling.md").read_text()
    assert re.search(r"\| max \| not run", t3) and re.search(r"\| avg \| \d+\.\d\d \(n=1\)", t3)
    t5 = pd.read_csv(res / "tables" / "T5_imagenet.csv")
    assert set(t5["status"]) == {"not run"} and set(t5["reported_v1_top1"].dropna()) == {26.21}
    t8 = pd.read_csv(res / "tables" / "T8_variants.csv")
    assert list(t8["variant"]) == ["BP (reference, MNIST)", "reference", "pool_avg", "alpha_0"]
    assert set(t8["status"]) == {"measured"} and t8["per_layer_test_acc"].str.startswith("[").all()
    assert list(t8["factor"]) == ["learning rule", "reference", "pooling", "alpha"]
    variants = t8.set_index("variant")
    bp_top = variants.loc["BP (reference, MNIST)", "best_strategy_acc"]
    assert variants.loc["reference", "minus_reference"] == 0
    for v in ("reference", "pool_avg", "alpha_0"):  # best strategy = the max over Fusion/Last/Best
        top = max(variants.loc[v, f"{s}_acc_mean"] for s in ("fusion", "last", "best"))
        assert variants.loc[v, "best_strategy_acc"] == top
        assert abs(variants.loc[v, "minus_bp"] - (top - bp_top)) < 1e-9
    t7 = pd.read_csv(res / "tables" / "T7_channel_scaling.csv")
    assert sorted(t7["classes"].unique()) == [10, 100, 1000]
    asge = t7[t7["method"] == "asge"]
    assert asge["params_trainable"].nunique() == 1 and asge["fixed_projection_values"].is_monotonic_increasing
    # every run folder holds the request and the engine's files; ASGE's diagnostics the goodness samples
    for d in (res / "runs" / "main").iterdir():
        assert {"request.yaml", "config.yaml", "history.csv", "metrics.json", "checkpoint.pt",
                "diagnostics.pt"} <= {p.name for p in d.iterdir()}
    import torch

    assert "goodness" in torch.load(res / "runs" / "main" / "asge-mnist-s0" / "diagnostics.pt", weights_only=True)


def test_mlflow_holds_every_run_with_history(tiny):
    work, _ = tiny
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    expected = {"tiny-main": {f"{m}-{d}-s0" for m in METHODS for d in DATASETS},
                "tiny-ablations": {f"asge-mnist-{v}-s0" for v in ("reference", "pool_avg", "alpha_0")}}
    for name, run_names in expected.items():
        exp = client.get_experiment_by_name(name)
        runs = client.search_runs([exp.experiment_id])
        assert {r.info.run_name for r in runs} == run_names
        for r in runs:
            assert r.info.status == "FINISHED", r.info.run_name
            assert "test_acc" in r.data.metrics and r.data.params["seed"] == "0"
            val_keys = [k for k in r.data.metrics if k.startswith("val_acc.")]
            assert val_keys and all([m.step for m in client.get_metric_history(r.info.run_id, k)] == [1]
                                    for k in val_keys)
            arts = {a.path for a in client.list_artifacts(r.info.run_id)}
            assert {"config.yaml", "history.csv", "metrics.json"} <= arts


def test_second_invocation_has_nothing_to_do(tiny):
    out = check(snakemake(*tiny, "-n"))
    assert "Nothing to be done" in out, out[-3000:]


def planned_jobs(out: str) -> list[tuple[str, str]]:
    """(rule, run) of the training jobs a dry run lists."""
    return re.findall(r"rule (train):\n(?:    .*\n)*?    wildcards: study=\w+, run=([\w.-]+)", out)


def test_changed_hyperparameter_reruns_only_that_method(tiny):
    out = check(snakemake(*tiny, "-n", config=("overrides={method: {bp: {lr: 0.02}}}",)))
    assert sorted(run for _, run in planned_jobs(out)) == ["bp-fashionmnist-s0", "bp-mnist-s0"], out[-4000:]
    assert "params have changed since last execution" in out.lower(), out[-4000:]


def test_an_edited_table_helper_module_rebuilds_tables_and_figures_not_runs(tiny):
    """Snakemake's code trigger sees only a rule's own script; a change to a module that the
    script imports (here tables_width.py) still reruns the tables and figures (the scripts'
    digest is their param), and no training job."""
    work, data = tiny
    module = work / "workflow" / "scripts" / "tables_width.py"
    source = module.read_text()
    try:
        module.write_text(source + "\n# an edit\n")
        out = check(snakemake(work, data, "-n"))
        planned = set(re.findall(r"^rule (\w+):", out, flags=re.M))
        assert {"aggregate", "table", "figure"} <= planned and "train" not in planned, out[-4000:]
    finally:
        module.write_text(source)
    assert "Nothing to be done" in check(snakemake(work, data, "-n")).replace("\n", " ")


def test_moving_the_data_reruns_nothing(tiny):
    work, data = tiny
    moved = data.parent / "moved-data"
    if not moved.exists():
        shutil.copytree(data, moved)
    out = check(snakemake(work, moved, "-n"))
    assert "Nothing to be done" in out, out[-3000:]


def test_more_epochs_resume_a_finished_run(tiny):
    """Raising `epochs` reruns the run's training job, which resumes from the checkpoint: the
    first epoch is not trained again (its history row is kept as it was)."""
    work, data = tiny
    cfg = ("results=results/extend", "methods=[bp]", "datasets=[mnist]", "ablations=null")
    check(snakemake(work, data, config=cfg))
    run = work / "results" / "extend" / "runs" / "main" / "bp-mnist-s0"
    first = pd.read_csv(run / "history.csv")
    assert list(first.epoch) == [1]
    out = check(snakemake(work, data, "-n", config=(*cfg, "overrides={all: {epochs: 2}}")))
    assert sorted(run for _, run in planned_jobs(out)) == ["bp-mnist-s0"], out[-4000:]
    check(snakemake(work, data, config=(*cfg, "overrides={all: {epochs: 2}}")))
    assert "resuming" in (work / "results" / "extend" / "logs" / "train" / "main" / "bp-mnist-s0.log").read_text()
    again = pd.read_csv(run / "history.csv")
    assert list(again.epoch) == [1, 2]
    keep = [c for c in first.columns if not c.endswith(("_time_s", "_per_s"))]
    pd.testing.assert_frame_equal(again[again.epoch == 1][keep], first[keep])


def test_a_fresh_clone_of_committed_runs_retrains_nothing(tiny, tmp_path):
    """Committed run folders (no checkpoints, no Snakemake metadata, checkout times in any order)
    plan only the aggregation, tables and figures, never a training job, and rebuild the
    tables and figures byte for byte (issue #15, item 4)."""
    import time

    work, data = tiny
    clone = tmp_path / "clone"
    clone.mkdir()
    for item in ("Snakefile", "workflow", "config", "profiles"):
        src = work / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, clone / item)
    shutil.copytree(work / "results" / "tiny" / "runs", clone / "results" / "tiny" / "runs",
                    ignore=shutil.ignore_patterns("checkpoint.pt", ".lock"))
    files = sorted((clone / "results").rglob("*"), key=lambda p: p.name, reverse=True)  # request.yaml newest
    past = time.time() - 3600  # checkout times are in the past (future ones read as clock skew)
    for i, f in enumerate(files):
        os.utime(f, (past + i, past + i))
    out = check(snakemake(clone, data, "-n"))
    planned = set(re.findall(r"^rule (\w+):", out, flags=re.M))
    assert planned and "train" not in planned, out[-4000:]
    assert "aggregate" in planned

    # A study that stopped halfway (one run unfinished, no tables yet): only that run trains, not
    # the finished ones beside it (a job upstream of training, e.g. an MLflow init flag, would
    # mark them all)
    unfinished = sorted((clone / "results" / "tiny" / "runs").glob("*/*/metrics.json"))[0]
    aside = unfinished.rename(tmp_path / "metrics.json")
    out = check(snakemake(clone, data, "-n"))
    trained = re.findall(r"^rule train:\n(?:.*\n)*?\s+wildcards: study=(\w+), run=(\S+)", out, flags=re.M)
    assert trained == [(unfinished.parent.parent.name, unfinished.parent.name)], out[-4000:]
    aside.rename(unfinished)

    # The finished study rebuilds the committed tables and figures byte for byte from the run folders
    check(snakemake(clone, data))
    tables = sorted(p.relative_to(work) for p in (work / "results" / "tiny" / "tables").iterdir()
                    if p.suffix in (".md", ".csv", ".tex"))
    figures = sorted(p.relative_to(work) for p in (work / "results" / "tiny" / "figures").glob("*.p[dn][fg]"))
    assert len(tables) >= 20 and len(figures) >= 10
    for rel in tables + figures:
        assert (clone / rel).read_bytes() == (work / rel).read_bytes(), rel

    # its report: the run folders have no Snakemake metadata here (no job made them), which
    # Snakemake warns once per file; the workflow folds that into one line (issue #28, item 13)
    out = check(snakemake(clone, data, "--report", "report.zip"))
    assert "Missing metadata for file" not in out
    n = int(re.search(r"Note: (\d+) outputs have no Snakemake metadata", out).group(1))
    assert n == len(list((clone / "results" / "tiny" / "runs").glob("*/*/*.*"))), out[-2000:]


def test_budget_table_and_figure_against_a_shorter_study(tiny, tmp_path):
    """`budget_reference` (the converged preset's key) adds T10 and fig_budget, built from this
    preset's runs table beside the other study's; without it neither is planned."""
    tiny_work, data = tiny
    assert "T10_budget" not in check(snakemake(tiny_work, data, "-n", "--forceall"))
    work = tmp_path / "repo"  # a copy: the shared tiny study keeps its outputs
    shutil.copytree(tiny_work, work, ignore=shutil.ignore_patterns(".snakemake"))
    short = tmp_path / "short_runs.csv"
    runs = pd.read_csv(work / "results" / "tiny" / "tables" / "runs.csv")
    runs.to_csv(short, index=False)  # the same runs stand in for a shorter study
    out_dir = work / "results" / "tiny"
    out = check(snakemake(work, data, config=(f"budget_reference={short}",)))
    assert "rule train:" not in out, out[-3000:]
    for name in ("tables/T10_budget.md", "tables/T10_budget.csv", "figures/fig_budget.png", "figures/fig_budget.pdf"):
        assert (out_dir / name).is_file(), name
    t10 = pd.read_csv(out_dir / "tables" / "T10_budget.csv")
    asge = t10[(t10["method"] == "asge") & (t10["dataset"] == "mnist") & (t10["strategy"] == "fusion")].iloc[0]
    assert asge["short_mean"] == pytest.approx(asge["converged_mean"])  # the same runs on both sides
    assert asge["short_gap"] == pytest.approx(asge["converged_gap"])


def test_width_study_trains_its_runs_and_builds_t12_and_the_width_figure(tiny, tmp_path):
    """`width` (the converged preset's second-width study, issue #26 item 4) plans its own runs
    in runs/width/, takes the main study's runs as the preset's own width, and adds T12 and
    fig_width; without it neither is planned."""
    tiny_work, data = tiny
    assert "T12_width" not in check(snakemake(tiny_work, data, "-n", "--forceall"))
    work = tmp_path / "repo"
    shutil.copytree(tiny_work, work, ignore=shutil.ignore_patterns(".snakemake"))
    width = "width={methods: [asge, bp], dataset: mnist, seeds: [0], variants: {double: {channels: [16, 16, 32, 32]}}}"
    out = check(snakemake(work, data, config=(width,)))
    assert sorted(re.findall(r"wildcards: study=(\w+), run=([\w.-]+)", out)) == [
        ("width", "asge-mnist-double-s0"), ("width", "bp-mnist-double-s0")], out[-3000:]
    out_dir = work / "results" / "tiny"
    for name in ("tables/T12_width.md", "tables/T12_width.csv", "figures/fig_width.png", "figures/fig_width.pdf"):
        assert (out_dir / name).is_file(), name
    t12 = pd.read_csv(out_dir / "tables" / "T12_width.csv")
    asge = t12[t12["method"] == "asge"].set_index("kind")
    assert sorted(asge.loc["measured", "width"]) == [0.125, 0.25]  # 8-8-16-16 and 16-16-32-32 of 64-64-128-128
    assert asge.loc["extrapolation", "width"] == 1.0 and asge.loc["extrapolation", "n"] == 2
    assert "width" in set(pd.read_csv(out_dir / "tables" / "runs.csv")["study"])
    # a misspelt variant in seeds_by stops the plan with the names, before any job
    typo = width.replace("seeds: [0],", "seeds: [0], seeds_by: {doubel: [1]},")
    proc = snakemake(work, data, "-n", config=(typo,))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "width.seeds_by names doubel" in out and "(double)" in out, out[-2000:]


def test_a_failed_rebuild_keeps_the_previous_tables_and_figures(tiny, tmp_path):
    """A corrupt metrics.json fails the rebuild with the file named; Snakemake puts the previous
    (committed) runs table, tables and figures back instead of deleting them (`update()` outputs)."""
    tiny_work, data = tiny
    work = tmp_path / "repo"
    shutil.copytree(tiny_work, work, ignore=shutil.ignore_patterns(".snakemake"))
    out_dir = work / "results" / "tiny"
    kept = {p: p.read_bytes() for d in ("tables", "figures") for p in (out_dir / d).iterdir()}
    metrics = out_dir / "runs" / "main" / "asge-mnist-s0" / "metrics.json"
    metrics.write_text(metrics.read_text()[:40])  # truncated, and newer than every table
    proc = snakemake(work, data, "--keep-going")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "asge-mnist-s0/metrics.json" in out, out[-3000:]
    assert "Restored previous version" in out and "Removing output files of failed job" not in out, out[-3000:]
    assert {p: p.read_bytes() for p in kept if p.exists()} == kept  # every file back, byte for byte


def test_finished_only_builds_a_study_in_progress_without_training(tiny, tmp_path):
    """`finished_only=true`: the tables and figures of the runs that finished, no train job for the
    one that did not, and a note in every table that says why a cell may be empty."""
    tiny_work, data = tiny
    work = tmp_path / "repo"
    # with Snakemake's records: the smaller plan (a changed param) is what rebuilds the tables
    shutil.copytree(tiny_work, work, ignore=shutil.ignore_patterns("locks"))
    out_dir = work / "results" / "tiny"
    (out_dir / "runs" / "main" / "cwc-mnist-s0" / "metrics.json").unlink()  # "still training"
    out = check(snakemake(work, data, config=("finished_only=true",)))
    assert "rule train:" not in out, out[-3000:]
    runs = pd.read_csv(out_dir / "tables" / "runs.csv")
    assert "cwc-mnist-s0" not in set(runs["run"]) and "cwc-fashionmnist-s0" in set(runs["run"])
    assert "finished_only: true" in (out_dir / "tables" / "T1_main.md").read_text()


def test_lint_is_clean(tiny):
    out = check(snakemake(*tiny, "--lint"))
    assert "Congratulations, your workflow is in a good condition!" in out, out[-3000:]


def test_report_holds_tables_and_figures(tiny):
    work, data = tiny
    check(snakemake(work, data, "--report", "report.zip"))
    import zipfile

    z = zipfile.ZipFile(work / "report.zip")
    names = z.namelist()
    # tables as HTML (shown in place; a CSV in the report is only a download), figures as PNG
    for item in (*(f"{t}.html" for t in TABLES), "runs.html", *(f"{f}.png" for f in FIGURES), "fig_cost.png"):
        assert any(n.endswith(item) for n in names), item
    assert not any(n.endswith(".csv") for n in names)
    page = next(z.read(n).decode() for n in names if n.endswith("report.html"))
    for category in ("Paper figures", "Accuracy", "Cost", "Tables"):
        assert category in page, category
    assert "results/tiny/runs/" in page  # the landing text names the preset's run folders


@pytest.mark.parametrize("override, words", [
    ("overrides={method: {asge: {alhpa: 1.0}}}", ["alhpa", "alpha"]),           # misspelt key
    ("overrides={method: {asge: {epochs: -2}}}", ["epochs", "-2", "> 0"]),       # negative epochs
    ("overrides={method: {asge: {alpha: -0.5}}}", ["alpha", "-0.5", ">= 0"]),    # alpha < 0
    ("overrides={method: {bp: {lr: fast}}}", ["lr", "fast", "float"]),           # wrong type
    ("overrides={method: {cwc: {channels: [10, 20, 40, 85]}}}", ["channels", "85"]),  # CwC cannot group
    ("methods=[asge, sgd]", ["sgd"]),                                            # unknown method
    ("datasets=[mnist, svhn]", ["svhn"]),                                        # unknown data set
    ("epoks=3", ["'epoks' was unexpected", "overrides"]),                        # unknown top-level key
    ("mlflow={experiment_prefx: a}", ["did you mean 'experiment_prefix'"]),      # misspelt nested key
])
def test_bad_config_stops_before_any_job(tiny, override, words):
    work, data = tiny
    before = sorted(p.stat().st_mtime_ns for p in (work / "results" / "tiny" / "runs").rglob("metrics.json"))
    proc = snakemake(work, data, "-n", config=(override,))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    for w in words:
        assert w in out, (w, out[-3000:])
    assert "rule train" not in out  # no job was planned, let alone run
    assert "Failed validating" not in out  # a few lines, not the 344-line schema
    after = sorted(p.stat().st_mtime_ns for p in (work / "results" / "tiny" / "runs").rglob("metrics.json"))
    assert before == after


def test_a_yaml_error_in_a_preset_file_names_the_file_and_line(tiny, tmp_path):
    bad = tmp_path / "my_preset.yaml"
    bad.write_text("results: results/mine\nmethods: [asge\n  seeds: 1\n")
    proc = snakemake(*tiny, "-n", config=(f"preset_file={bad}",))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"{bad}, line 3" in out and "not valid YAML" in out, out[-3000:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the warning is for machines without CUDA")
def test_the_paper_preset_on_a_cpu_warns_at_planning_time(tmp_path):
    runs, out = dry_run_plan("paper", tmp_path / "results")
    warning = [line for line in out.splitlines() if "need a CUDA GPU" in line]
    assert len(warning) == 1 and f"its {len(runs)} training runs" in warning[0] and "preset=smoke" in warning[0]


def test_sigkilled_workflow_resumes_with_rerun_incomplete(tiny):
    """Kill the whole Snakemake process group mid-training; `--rerun-incomplete` resumes the run
    from its checkpoint and continues the same MLflow run (no unmarked duplicate)."""
    import signal
    import time

    work, data = tiny
    cfg = ("results=results/killed", "methods=[asge]", "datasets=[mnist]", "ablations=null",
           "overrides={all: {epochs: 150}}")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(OMP_WAIT_POLICY="PASSIVE", MLFLOW_DISABLE_TELEMETRY="true")
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--config", "preset=tiny", f"data_root={data}",
           "data_mirrors=[]", "offline=true", *cfg]
    run = work / "results" / "killed" / "runs" / "main" / "asge-mnist-s0"
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while not (run / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / "checkpoint.pt").exists() and not (run / "metrics.json").exists(), "not killed mid-training"
    killed_epochs = len(pd.read_csv(run / "history.csv").epoch.unique())
    assert 0 < killed_epochs < 150

    # a killed Snakemake leaves its lock: the documented recovery is --unlock, then --rerun-incomplete
    check(subprocess.run([*cmd, "--unlock"], cwd=work, env=env, capture_output=True, text=True, timeout=300))
    check(subprocess.run([*cmd, "--rerun-incomplete"], cwd=work, env=env, capture_output=True, text=True,
                         timeout=900))
    assert "resuming" in (work / "results" / "killed" / "logs" / "train" / "main" / "asge-mnist-s0.log").read_text()
    assert sorted(pd.read_csv(run / "history.csv").epoch.unique()) == list(range(1, 151))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny-main")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "asge-mnist-s0"
            and r.data.params.get("epochs") == "150"]
    live = [r for r in runs if r.data.tags.get("asge.superseded") != "true"]
    assert len(live) == 1 and live[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(live[0].info.run_id, "val_acc.layer1")]
    assert sorted(set(steps)) == list(range(1, 151))
