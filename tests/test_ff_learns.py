"""FF learns: on real MNIST (the copy in ../shared/data) a small FF-CNN beats chance by far
within a few hundred steps, and after training the true label scores the highest goodness."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from asge.data import DataError, build_data
from asge.engine import Trainer
from asge.methods import create_method
from asge.train import resolve

SMALL = ["channels=[8, 16, 32]", "kernel_size=5", "pool_layers=[1, 2, 3]", "subset_per_class=100", "val_size=200",
         "test_subset_per_class=30", "batch_size=32", "epochs=10", "lr=0.004", "warmup_epochs=0.1",
         "eval_batch_size=300", "threads=1", "offline=true", "deterministic=true"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ff")
    cfg = resolve("ff", "mnist", overrides=[*SMALL, f"data_root={out / 'data'}"])
    try:
        metrics = Trainer(cfg, out / "run").run()
    except DataError as e:
        pytest.fail(f"real MNIST not found (../shared/data should hold it): {e}")
    return cfg, out / "run", metrics


def test_ff_beats_chance_on_real_mnist_within_a_few_hundred_steps(trained):
    cfg, run, metrics = trained
    steps = cfg["epochs"] * ((1000 - cfg["val_size"]) // cfg["batch_size"])
    assert steps <= 300
    assert metrics["strategies"]["fusion"]["acc"] > 0.4, metrics["strategies"]  # chance: 0.1
    hist = pd.read_csv(run / "history.csv")
    # the per-layer positive/negative rates of Fig. 1, on training and validation data
    for col in ("train_posneg_acc", "train_pos_acc", "train_neg_acc", "val_pos_acc", "val_neg_acc"):
        assert col in hist.columns and hist[col].between(0, 1).all(), col
    last = hist[hist.epoch == cfg["epochs"]]
    assert (last.val_pos_acc + last.val_neg_acc).iloc[-1] / 2 > 0.6  # the last layer separates on unseen data
    assert json.loads((run / "metrics.json").read_text())["primary_strategy"] == "fusion"


def test_ff_true_label_has_the_highest_goodness_after_training(trained):
    cfg, run, _ = trained
    data = build_data(cfg, torch.device("cpu"), 0, 1)
    model = create_method("ff", cfg, data.info)
    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    model.load_state_dict(state)
    model.eval()
    x, y = next(iter(data.test))
    fused = model.predict(model.layer_scores(x), "fusion", 0)          # [B, N] summed goodness
    true = fused.gather(1, y[:, None]).squeeze(1)
    wrong = fused.masked_fill(torch.nn.functional.one_hot(y, 10).bool(), float("-inf")).max(1).values
    assert (true > wrong).float().mean() > 0.4                         # argmax = the true label, 4x chance
    assert fused.gather(1, y[:, None]).mean() > fused.mean()            # true labels score above average
