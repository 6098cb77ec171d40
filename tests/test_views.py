"""What users see: figures, tables and MLflow, checked on the tiny preset's output (the session
fixture `tiny`, shared with tests/test_workflow.py: the workflow runs once; the report's HTML
tables and categories are checked there, where it is built).

Figures are redrawn from the run folders into tmp_path with the workflow's own functions,
and the matplotlib figure is captured to check what is drawn: a figure's marks come from one
predictor, layer-wise figures show every layer of the net, the chance line lies in the y-range,
the legend sits outside the axes. The MLflow checks run against the tiny run's real SQLite store.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

import figures  # noqa: E402
import figures_cost  # noqa: E402
import tables  # noqa: E402
from asge.progress import EpochProgress  # noqa: E402
from runs_schema import RUNS_COLUMNS  # noqa: E402


def run_dir(tiny, name: str, study: str = "main") -> Path:
    return tiny[0] / "results" / "tiny" / "runs" / study / name


@pytest.fixture
def captured(monkeypatch):
    """The figures drawn (instead of written as PNG/PDF)."""
    figs = []
    monkeypatch.setattr(figures, "save", lambda fig, png, pdf: figs.append(fig))
    return figs


def chance_in_range(ax, chance: float) -> bool:
    lo, hi = ax.get_ylim()
    return lo <= chance <= hi and any(list(line.get_ydata()) == [chance, chance] for line in ax.get_lines())


@pytest.mark.parametrize("fig, run, chance", [("fig1", "ff-mnist-s0", 50.0), ("fig3", "asge-mnist-s0", 10.0)])
def test_layer_figures_show_every_layer_with_chance(tiny, captured, fig, run, chance):
    d = run_dir(tiny, run)
    channels = yaml.safe_load((d / "config.yaml").read_text())["channels"]
    drawn = getattr(figures, fig)(str(d / "history.csv"), "x.png", "x.pdf")
    assert drawn == [f"layer{i}" for i in range(1, len(channels) + 1)]  # the net's layers, none dropped
    f = captured[0]
    axes = [ax for ax in f.axes if ax.get_visible()]
    history = pd.read_csv(d / "history.csv")
    if fig == "fig1":  # positives and negatives, on training batches and on the validation split
        assert {"val_pos_acc", "val_neg_acc"} <= set(history.columns)
        assert len(axes) == 4 and any("validation" in ax.get_title() for ax in axes)
    for ax in axes:
        assert chance_in_range(ax, chance), (ax.get_title(), ax.get_ylim())
    # the legend is the figure's, right of every panel (it covers no line)
    assert f.legends and not any(ax.get_legend() for ax in axes)
    f.canvas.draw()
    legend_x0 = f.legends[0].get_window_extent().x0
    assert all(ax.get_window_extent().x1 <= legend_x0 for ax in axes)
    # the title names the run's width, epochs, seed and hardware
    title = f._suptitle.get_text()
    assert "channels " + "-".join(map(str, channels)) in title and "epochs=1" in title and "seed 0" in title
    assert "CPU" in title


def test_accuracy_figure_marks_one_predictor_per_method(tiny, captured):
    dirs = sorted(run_dir(tiny, "x").parent.glob("*-mnist-s0"))
    shown = figures.fig_accuracy("mnist", dirs, "x.png", "x.pdf")
    assert set(shown) == {"asge", "ff", "cwc", "bp"}
    for method, info in shown.items():
        d = run_dir(tiny, f"{method}-mnist-s0")
        m = json.loads((d / "metrics.json").read_text())
        h = pd.read_csv(d / "history.csv")
        deepest = f"layer{len(yaml.safe_load((d / 'config.yaml').read_text())['channels'])}"
        # BP: its head; CwC-FF: GA = the last conv layer; ASGE/FF: Last Pred beside their Fusion
        expect = {"bp": ("last", ["head"]), "cwc": ("ga", [deepest]), "asge": ("last", [deepest]),
                  "ff": ("last", [deepest])}
        assert (info["strategy"], info["readouts"]) == expect[method]
        # the line is that readout's validation accuracy, the star that strategy's test accuracy
        line = h[h["readout"] == info["readouts"][0]].set_index("epoch")["val_acc"] * 100
        assert info["line"] == pytest.approx(line.to_dict())
        assert info["star"] == pytest.approx(m["strategies"][info["strategy"]]["acc"] * 100)
        # a primary strategy without a per-epoch curve (Fusion) is a separate, labelled mark
        assert info["primary"] == m["primary_strategy"]
        if m["primary_strategy"] != info["strategy"]:
            assert info["diamond"] == pytest.approx(m["strategies"][m["primary_strategy"]]["acc"] * 100)
    ax = captured[0].axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert any(label.startswith(f"CwC-FF: GA Pred ({shown['cwc']['readouts'][0].replace('layer', 'layer ')})")
               for label in labels)
    assert any(label.startswith("ASGE: Fusion Pred (primary), test only") for label in labels)
    assert chance_in_range(ax, 10.0)


def test_accuracy_figure_zooms_in_when_every_method_is_far_above_chance(tiny, captured, tmp_path):
    """MNIST at 88-98 %: a y-axis down to chance (10 %) squeezed the four lines into its top tenth
    (issue #28, item 13); far above chance, the axis holds the data and the legend says where chance is."""
    dirs = []
    for src in sorted(run_dir(tiny, "x").parent.glob("*-mnist-s0")):
        d = shutil.copytree(src, tmp_path / src.name)
        h = pd.read_csv(d / "history.csv")
        h["val_acc"] = 0.88 + 0.1 * h["val_acc"]
        h.to_csv(d / "history.csv", index=False)
        m = json.loads((d / "metrics.json").read_text())
        for s in m["strategies"].values():
            s["acc"] = 0.88 + 0.1 * s["acc"]
        (d / "metrics.json").write_text(json.dumps(m))
        dirs.append(d)
    figures.fig_accuracy("mnist", dirs, "x.png", "x.pdf")
    ax = captured[0].axes[0]
    lo, hi = ax.get_ylim()
    assert 80.0 <= lo < 88.0 and hi <= 100.0, (lo, hi)
    assert "chance (1/10), below the axis" in ax.get_legend_handles_labels()[1]


def test_tables_count_blocks_and_guard_delta(tiny):
    t = tiny[0] / "results" / "tiny" / "tables"
    t2 = pd.read_csv(t / "T2_strategies.csv")
    rows = t2.set_index(["method", "dataset", "strategy"])
    # BP runs its 4 conv blocks and one head (not "1 inference layer"); CwC-FF GA has no head
    assert str(rows.loc[("bp", "mnist", "last"), "inference_blocks"]) == "4"
    assert str(rows.loc[("bp", "mnist", "last"), "inference_heads"]) == "1"
    assert str(rows.loc[("cwc", "mnist", "ga"), "inference_heads"]) == "0"
    assert str(rows.loc[("cwc", "mnist", "sf"), "inference_heads"]) == "1"
    assert str(rows.loc[("asge", "mnist", "fusion"), "inference_heads"]) == "3"  # fusion_from=2 of 4 layers
    # tiny runs (1 epoch, narrow) are not the paper's setting: no Δ, a dash with a footnote
    t1 = pd.read_csv(t / "T1_main.csv")
    measured = t1[t1["status"] == "measured"]
    assert measured["difference"].isna().all() and not measured["comparable"].astype(bool).any()
    md = (t / "T1_main.md").read_text()
    assert "| – † |" in md and "† No Δ" in md
    # T10 is built only where a shorter-budget study is configured, T12 where a width study is
    # planned (test_workflow covers both)
    for name in (n for n in tables.TITLES if n not in ("T10_budget", "T12_width")):
        tex = (t / f"{name}.tex").read_text()
        assert "\\toprule" in tex and "\\bottomrule" in tex and "\\hline" not in tex
        n_cols = len(re.search(r"\\begin\{tabular\}\{(l+)\}", tex).group(1))
        assert ("\\resizebox{\\textwidth}" in tex) == (n_cols > 6), name
        html = (t / f"{name}.html").read_text()
        assert html.count("<tr>") >= 2 and "<td>" in html, name


def docs_filter() -> str:
    """The current-run filter that docs/operating.md gives for the MLflow UI."""
    text = (REPO / "docs" / "operating.md").read_text()
    m = re.search(r"`(tags\.asge\.superseded[^`]*)`", text)
    assert m, "docs/operating.md names no filter on tags.asge.superseded"
    assert m.group(1) in (REPO / "README.md").read_text()
    return m.group(1)


def test_documented_filter_returns_the_current_runs(tiny, tmp_path):
    from mlflow.tracking import MlflowClient

    shutil.copy(tiny[0] / "mlflow.db", tmp_path / "mlflow.db")  # a superseded run is added below
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny-main").experiment_id
    every = client.search_runs([exp])
    current = {r.info.run_id for r in every if r.data.tags.get("asge.superseded") != "true"}
    filt = docs_filter()
    found = client.search_runs([exp], filter_string=filt)
    assert {r.info.run_id for r in found} == current and len(found) >= 8
    assert len({r.info.run_name for r in found}) == len(found)  # one current run per name
    victim = found[0].info.run_id
    client.set_tag(victim, "asge.superseded", "true")
    assert victim not in {r.info.run_id for r in client.search_runs([exp], filter_string=filt)}


def test_mlflow_runs_hold_dataset_and_named_train_metrics(tiny):
    from mlflow.tracking import MlflowClient

    work, data = tiny
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny-main").experiment_id
    for r in client.search_runs([exp], filter_string=docs_filter()):
        inputs = client.get_run(r.info.run_id).inputs.dataset_inputs
        assert len(inputs) == 1, r.info.run_name
        ds = inputs[0].dataset
        assert ds.name == r.data.params["dataset"] and len(ds.digest) == 12
        assert json.loads(ds.source)["uri"].startswith(str(data))  # the data root the test wrote
        splits = json.loads(ds.profile)["splits"]
        assert splits["train"] > 0 and splits["val"] > 0 and splits["test"] > 0
        keys = set(r.data.metrics)
        if r.data.params["method"] == "ff":  # FF's pos/neg separation rate is not a class accuracy
            assert "train_posneg_acc.layer1" in keys and "train_acc.layer1" not in keys
        else:
            assert any(k.startswith("train_acc.") for k in keys)


def test_copied_store_relocates_its_artifacts(tiny, tmp_path):
    from mlflow.tracking import MlflowClient

    from asge.tracking.cli import main as tracking_main

    work = tiny[0]
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(work / "mlflow.db", moved / "mlflow.db")
    shutil.copytree(work / "mlartifacts", moved / "mlartifacts")
    uri = f"sqlite:///{moved / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny-main")
    assert exp.artifact_location.startswith((work / "mlartifacts").as_uri())  # still the original's
    assert tracking_main(["relocate", "--uri", uri]) == 0
    exp = client.get_experiment_by_name("tiny-main")
    assert exp.artifact_location.startswith((moved / "mlartifacts").as_uri())
    run = client.search_runs([exp.experiment_id], max_results=1)[0]
    assert run.info.artifact_uri.startswith((moved / "mlartifacts").as_uri())
    local = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path))
    assert json.loads(Path(local).read_text())["method"] == run.data.params["method"]


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.mark.parametrize("tty", [False, True])
def test_epoch_progress(tty, caplog):
    clock, out = FakeClock(), io.StringIO()
    p = EpochProgress(2, 5, total=100, stream=out, tty=tty, interval_s=30.0, clock=clock)
    with caplog.at_level("INFO", logger="asge"):
        for step in range(1, 101):
            clock.t = step * 1.0  # 1 s per batch of 64 images
            p.update(step, step * 64)
        p.close()
    if tty:
        text = out.getvalue()
        assert "\r" in text and "epoch 3/5 [" in text and "64 img/s" in text and text.endswith("\n")
        assert "100/100 batches" in text  # the last state is drawn
    else:
        lines = [r.getMessage() for r in caplog.records]
        assert out.getvalue() == "" and len(lines) == 3  # at 30, 60, 90 s; the epoch's end is the engine's line
        assert lines[0] == "epoch 3/5: 30/100 batches (30%), 64 img/s, ETA 1:10 for this epoch"


def test_dataset_input_survives_the_insert_race(tmp_path, monkeypatch):
    """Two runs of one experiment finishing together race to insert their shared dataset row;
    the loser's UNIQUE-constraint error is retried (the second call finds the row)."""
    from asge.tracking import MLflowCallback

    calls = []

    class Client:
        def log_inputs(self, run_id, datasets):
            calls.append(datasets)
            if len(calls) == 1:
                raise RuntimeError("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id")

    cb = MLflowCallback("e", "asge-mnist-s0", tracking_uri=f"sqlite:///{tmp_path / 'x.db'}")
    cb.client, cb.run_id = Client(), "run"
    cb.cfg = {"dataset": "mnist", "data_root": str(tmp_path), "data_mirrors": [], "seed": 0, "val_size": 5}
    cb._log_dataset({"data_splits": {"train": 10, "val": 5, "test": 5}})
    assert len(calls) == 2
    ds = calls[-1][0].dataset
    assert ds.name == "mnist" and json.loads(ds.profile)["splits"] == {"train": 10, "val": 5, "test": 5}
    assert json.loads(ds.source)["uri"].startswith("not found under")  # no MNIST in tmp_path: said so


def test_fig_cost_draws_parameters_of_the_data_set_with_most_methods(tmp_path):
    """A study in progress (finished_only): the first data set in runs.csv lacks some methods; the
    parameter panel shows the data set on which most methods ran, and names a method missing there."""
    rows = []
    for dataset, methods in (("cifar10", ("asge", "bp")), ("fashionmnist", ("asge", "bp", "cwc")),
                             ("mnist", ("bpvgg",))):
        for m in methods:
            rows.append({"study": "main", "method": m, "dataset": dataset, "is_primary": True, "epochs": 2,
                         "strategy": {"asge": "fusion", "bp": "last", "cwc": "ga", "bpvgg": "last"}[m],
                         "epoch_time_s_mean": 10.0, "inference_params": 1000 * (1 + len(m)), "hardware": "CPU"})
    runs = tmp_path / "runs.csv"
    pd.DataFrame(rows).reindex(columns=list(RUNS_COLUMNS)).to_csv(runs, index=False)  # as aggregate writes it
    png, pdf = tmp_path / "c.png", tmp_path / "c.pdf"
    stats = figures_cost.fig_cost(str(runs), str(png), str(pdf), ["asge", "bp", "cwc", "bpvgg"])
    assert png.stat().st_size > 0 and pdf.stat().st_size > 0
    assert set(stats["dataset"]) == {"cifar10", "fashionmnist", "mnist"}
