"""The columns of runs.csv (results/<preset>/tables/runs.csv), declared once, and its reader.

aggregate.py writes one row per finished run and prediction strategy with exactly these columns
in this order (an empty study: the header alone); every table and figure reads the file through
`read_runs`, so a frame of runs always has every column, also when it has no row. In order:

- the run: study, run folder name, method, data set, seed, the ablation variant ("" in the main
  study) and the epochs trained;
- what metrics.json says of the whole run: the validation-selected readout, the config hash and
  the test accuracy of every readout (JSON list);
- cost (asge.runfolder.COST_FIELDS): parameters, fixed buffer values, epoch and training time,
  throughput, peak training memory, compile time;
- method extras: ASGE's goodness dimensions over all layers and patch counts per layer (JSON),
  the readouts (JSON list);
- hardware: its label and the device, GPU, CPU, threads and torch version it was read from;
- `cfg_<key>`: the config keys that are ablation axes or change a run's scale
  (aggregate.CONFIG_COLUMNS; lists and dicts as JSON);
- numerics (bf16 autocast, channels-last) and the validation curve (best value, the gain of the
  last epochs and over how many epochs), then the run folder;
- per prediction strategy: its name, whether it is the method's primary one, test and validation
  accuracy, the conv blocks and heads it runs, top-5, its parameters, readouts computed and
  inference memory (with how that was measured).

Standard library only at import (the Snakemake process may read the list); `read_runs` imports
pandas when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

RUN = ("study", "run", "method", "dataset", "seed", "variant", "epochs")
WHOLE_RUN = ("best_readout", "config_hash", "test_acc_per_readout")
COST = ("params_total", "params_trainable", "fixed_buffer_values", "epoch_time_s_mean", "train_time_s",
        "train_images_per_s", "peak_train_memory_bytes", "compile_time_s")
METHOD_EXTRA = ("goodness_dims_total", "patches", "readouts")
HARDWARE = ("hardware", "device", "gpu", "cpu", "threads", "torch")
CONFIG = ("cfg_pooling", "cfg_alpha", "cfg_width", "cfg_channels", "cfg_pool_layers", "cfg_lr", "cfg_batch_size",
          "cfg_subset_per_class", "cfg_test_subset_per_class", "cfg_val_size", "cfg_image_size", "cfg_optimizer",
          "cfg_goodness_site", "cfg_goodness_reduction", "cfg_logit_scale", "cfg_groups", "cfg_theta",
          "cfg_fusion_from")
NUMERICS_AND_CURVE = ("amp_bf16", "channels_last", "val_best", "val_gain_last3", "val_gain_epochs", "run_dir")
STRATEGY = ("strategy", "is_primary", "test_acc", "val_acc", "inference_blocks", "inference_heads", "test_top5",
            "inference_params", "inference_layers", "inference_memory_bytes", "inference_memory_method")

#: every column of runs.csv, in the file's order
RUNS_COLUMNS: tuple[str, ...] = RUN + WHOLE_RUN + COST + METHOD_EXTRA + HARDWARE + CONFIG + NUMERICS_AND_CURVE + STRATEGY

#: how to write runs.csv again from the run folders (nothing is trained)
REBUILD = "snakemake --cores 2 --config preset=<preset> finished_only=true --forcerun aggregate"


def empty_runs() -> pd.DataFrame:
    """The runs of a study without a finished run: no row, every column."""
    import pandas as pd

    return pd.DataFrame(columns=list(RUNS_COLUMNS))


def read_runs(path: str | Path) -> pd.DataFrame:
    """runs.csv with exactly RUNS_COLUMNS, in their order (no finished run: no row, every column);
    a file without one of them (written before the list, or not by aggregate.py) fails with what
    is missing and how to rebuild it."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:  # an empty file: the runs.csv of an empty study before the list
        df = pd.DataFrame()
    missing = [c for c in RUNS_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks the runs.csv column(s) {', '.join(missing)}: rebuild it with the workflow, "
                         f"e.g. `{REBUILD}`")
    return df[list(RUNS_COLUMNS)]
