"""MLflow tracking of training runs: the public face.

    from asge.tracking import MLflowCallback
    Trainer(cfg, out, [MLflowCallback(experiment="main", run_name="asge-cifar10-s0", cfg=cfg)]).run()

The run folder stays the source of truth; MLflow mirrors it for browsing. One concern per module:

    asge.tracking.store     the store: URI, client, retries, experiments, dataset input, relocation
    asge.tracking.records   what is logged: params, tags, per-epoch and final metrics (pure functions)
    asge.tracking.callback  MLflowCallback, the engine callback (resume, supersede, FAILED, KILLED)
    asge.tracking.plots     the curves plot logged with each finished run
    asge.tracking.importer  committed run folders into a store, as if logged live
    asge.tracking.cli       `python -m asge.tracking init | relocate | import | links`
"""
from __future__ import annotations

# none of these imports mlflow at import time (each does it inside its functions), and
# asge.tracking.store switches MLflow's telemetry off when it is imported, before anything does
from asge.tracking.callback import MLflowCallback
from asge.tracking.records import epoch_metrics, final_metrics, param_items
from asge.tracking.store import default_tracking_uri, get_or_create_experiment, init_store, is_transient, retry

__all__ = ["MLflowCallback", "default_tracking_uri", "epoch_metrics", "final_metrics", "get_or_create_experiment",
           "init_store", "is_transient", "param_items", "retry"]
