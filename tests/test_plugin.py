"""A user's own method in one file (docs/extending.md): registered from a module outside the
suite through the workflow's `plugins` key, it trains in the tiny preset and its rows appear in
T1, T9, the accuracy figure and MLflow, without a change to any of the suite's files."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd

from tests.test_workflow import check, snakemake

REPO = Path(__file__).resolve().parent.parent

METHOD = '''
"""A linear classifier on the pixels, trained by backprop: a user's method in one file."""
import torch
from torch import nn
from torch.nn import functional as F

from asge.method import Method, StepStats
from asge.registry import register_method


@register_method("linear")
class Linear(Method):
    display_name = "Linear probe"

    def __init__(self, cfg, info):
        super().__init__(cfg, info)
        self.head = nn.Linear(info.in_channels * info.image_size ** 2, info.num_classes)

    @property
    def readout_names(self):
        return ["head"]

    def layer_scores(self, x, upto=None):
        return [self.head(x.flatten(1))]

    def train_step(self, x, y, epoch):
        logits = self.head(x.flatten(1))
        loss = F.cross_entropy(logits, y)
        loss.backward()
        return StepStats(loss.detach().reshape(1), (logits.argmax(1) == y).sum().reshape(1).float())
'''


def suite_state() -> str:
    """What git sees of the suite's own files (tracked and untracked, outside results/)."""
    out = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!results"], cwd=REPO, capture_output=True,
                         text=True, check=True)
    return out.stdout


def test_a_users_method_in_one_file_gets_the_suites_tables_figures_and_mlflow(tiny, tmp_path):
    tiny_work, data = tiny
    work = tmp_path / "repo"
    # with Snakemake's records: a changed plan (params) is what makes it rebuild up-to-date tables
    shutil.copytree(tiny_work, work, ignore=shutil.ignore_patterns("locks"))
    plugin = tmp_path / "my_method.py"
    plugin.write_text(METHOD)
    before = suite_state()
    out = check(snakemake(work, data, config=(f"plugins=[{plugin}]", "methods=[asge, linear]", "datasets=[mnist]",
                                              "ablations=null")))
    trained = {line.split("run=")[1] for line in out.splitlines() if "wildcards: study=main, run=" in line}
    assert trained == {"linear-mnist-s0"}, out[-3000:]  # ASGE's finished run is reused
    tables = work / "results" / "tiny" / "tables"
    t1 = pd.read_csv(tables / "T1_main.csv")
    assert "linear" in set(t1["method"]) and "Linear probe" in (tables / "T1_main.md").read_text()
    assert "Linear probe" in (tables / "T9_paired.md").read_text()
    log = (work / "results" / "tiny" / "logs" / "figures" / "fig_accuracy_mnist.log").read_text()
    assert "linear: line and star = last (readout ['head'])" in log
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny-main").experiment_id],
                              filter_string="attributes.run_name = 'linear-mnist-s0'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and "test_acc" in runs[0].data.metrics
    assert suite_state() == before  # no file of the suite was touched
