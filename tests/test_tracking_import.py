"""`python -m asge.tracking import`: a committed-style run folder (one tiny run trained here with
the live MLflowCallback, checkpoint deleted) imported into fresh stores and compared with what the
live callback logged; a second import adds nothing. A few seconds of training."""
from __future__ import annotations

import shutil

import pytest

from asge.engine import Trainer
from asge.tracking import MLflowCallback
from asge.tracking.cli import main
from asge.tracking.importer import import_runs
from tests.fakedata import write_mnist
from tests.test_engine import cfg_for
from tests.test_tracking import empty_store, new_store, runs_named, steps  # noqa: F401 - empty_store: a fixture

RUN = "asge-mnist-s0"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, empty_store):  # noqa: F811
    """(runs folder, data root, live store) after one tiny run logged live to experiment 'main'."""
    base = tmp_path_factory.mktemp("committed")
    data = write_mnist(base / "data", n_train=600)
    runs = base / "runs"
    out = runs / "main" / RUN
    live = new_store(empty_store, base)
    cfg = cfg_for(data, "epochs=2", "val_size=100")
    Trainer(cfg, out, [MLflowCallback("main", RUN, live, cfg=cfg, base_delay=0.05)]).run()
    (out / "checkpoint.pt").unlink()  # committed folders hold none
    return runs, data, live


def only_run(uri, experiment="main"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (run,) = runs_named(client, RUN, experiment)
    return client, run


def artifacts(client, run_id):
    top = [a.path for a in client.list_artifacts(run_id)]
    return sorted(p for a in top for p in ([x.path for x in client.list_artifacts(run_id, a)] if a == "plots" else [a]))


def test_import_logs_what_the_live_callback_logged(trained, empty_store, tmp_path):  # noqa: F811
    runs, _, live_uri = trained
    uri = new_store(empty_store, tmp_path)
    lines: list[str] = []
    assert import_runs(runs, "", uri, say=lines.append).line() == "imported 1, skipped 0"
    assert lines == [f"imported main/{RUN}"]
    live_client, live = only_run(live_uri)
    client, run = only_run(uri)
    assert run.info.status == "FINISHED" and run.info.start_time < run.info.end_time
    assert run.data.params == live.data.params
    assert set(run.data.metrics) == set(live.data.metrics)
    per_epoch = [k for k in live.data.metrics if len(live_client.get_metric_history(live.info.run_id, k)) > 1]
    assert {"val_acc.layer1", "val_acc.layer2", "train_acc.layer1", "train_loss.layer2", "epoch_time_s", "lr",
            "val_acc_best_readout", "val_acc_last"} <= set(per_epoch)
    for key in run.data.metrics:  # the same values at the same steps (step = epoch; finals at step = epochs)
        got = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        assert got == [(m.step, m.value) for m in live_client.get_metric_history(live.info.run_id, key)], key
    assert steps(client, run.info.run_id, "val_acc.layer2") == [1, 2]
    tags, live_tags = run.data.tags, live.data.tags
    assert tags["asge.imported"] == "true" and tags["asge.imported_from"].endswith(f"main/{RUN}")
    assert tags["asge.run_dir"] == str((runs / "main" / RUN).resolve())
    for k in ("asge.config_hash", "asge.metrics_digest", "asge.method", "asge.seed", "asge.study", "asge.best_readout",
              "asge.torch", "asge.python"):
        assert tags[k] == live_tags[k] and tags[k], k
    assert {k: v for k, v in tags.items() if k.startswith("asge.hw.")} == \
        {k: v for k, v in live_tags.items() if k.startswith("asge.hw.")} != {}
    assert "asge.host" not in tags  # the importing machine is not the one that trained
    assert artifacts(client, run.info.run_id) == artifacts(live_client, live.info.run_id) == \
        ["config.yaml", "history.csv", "metrics.json", "plots/curves.png"]
    (ds,) = run.inputs.dataset_inputs
    assert ds.dataset.digest == live.inputs.dataset_inputs[0].dataset.digest


def test_second_import_adds_nothing(trained, empty_store, tmp_path, capsys):  # noqa: F811
    runs, _, live_uri = trained
    uri = new_store(empty_store, tmp_path)
    assert main(["import", str(runs), "--experiment-prefix", "ref-", "--tracking-uri", uri]) == 0
    assert capsys.readouterr().out.startswith("imported 1, skipped 0")
    client, run = only_run(uri, "ref-main")
    history = client.get_metric_history(run.info.run_id, "val_acc.layer1")
    assert main(["import", str(runs), "--experiment-prefix", "ref-", "--tracking-uri", uri]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("imported 0, skipped 1") and "already in the store" in captured.err
    client, again = only_run(uri, "ref-main")  # still exactly one run
    assert again.info.run_id == run.info.run_id
    assert client.get_metric_history(run.info.run_id, "val_acc.layer1") == history
    # the live run of the same folder is the same run: importing into its store adds nothing
    assert import_runs(runs, "", live_uri, say=lambda _: None).line() == "imported 0, skipped 1"
    only_run(live_uri)


def test_unfinished_folder_is_skipped(trained, empty_store, tmp_path):  # noqa: F811
    runs, _, _ = trained
    copy = tmp_path / "runs"
    shutil.copytree(runs / "main" / RUN, copy / "main" / RUN)
    (copy / "main" / RUN / "metrics.json").unlink()
    lines: list[str] = []
    assert import_runs(copy, "", new_store(empty_store, tmp_path), say=lines.append).line() == "imported 0, skipped 1"
    assert lines == [f"skipped  main/{RUN}: unfinished (no metrics.json)"]


def test_missing_data_skips_only_the_dataset_input(trained, empty_store, tmp_path):  # noqa: F811
    runs, data, _ = trained
    uri = new_store(empty_store, tmp_path)
    moved = data.with_name("data-elsewhere")
    data.rename(moved)  # the importing machine has no copy of the data set
    try:
        assert import_runs(runs, "", uri, say=lambda _: None).line() == "imported 1, skipped 0"
    finally:
        moved.rename(data)
    _, run = only_run(uri)
    assert run.info.status == "FINISHED" and not run.inputs.dataset_inputs
    assert run.data.tags["asge.import.dataset_input"].startswith("skipped: mnist not found")
    assert "val_acc.layer2" in run.data.metrics
