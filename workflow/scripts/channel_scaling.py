"""Table T7: how parameters and goodness dimensions of CwC-FF and ASGE grow with the class count.

Nothing is trained: the models are built by the suite's own builders (asge.methods.create_method)
for a data set description whose class count is replaced (a SimpleNamespace), from the run
files' configurations (config/runs/<method>/<dataset>.yaml, else the method defaults).

- ASGE keeps its convolutions; only the fixed random projection (N x goodness dims, never
  trained) grows with N. Goodness dims per sample = sum over layers of C_l * P_l^2.
- CwC-FF splits every layer's channels into one group per class, so channels must be multiples
  of N. Two ways to meet that: "channels per class kept" scales the 10-class widths by N/10
  (the design's intent); "fewest channels allowed" rounds each width up to a multiple of N.
  Goodness values per sample = sum over layers of the class-group count (N per layer).
CwC-FF models are built on PyTorch's meta device (shapes only: at N = 1000 they hold billions
of parameters), ASGE on the CPU.
"""

import math
import sys
from types import SimpleNamespace
from typing import Any

import pandas as pd
import torch

BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _info(dataset: str, n: int) -> SimpleNamespace:
    from asge.data import dataset_info

    base = dataset_info(dataset)
    return SimpleNamespace(name=base.name, num_classes=n, in_channels=base.in_channels, image_size=base.image_size,
                           mean=base.mean, std=base.std, crop_padding=base.crop_padding, hflip=base.hflip)


def _count(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    fixed = sum(b.numel() for name, b in model.named_buffers() if not name.endswith(BN_STATS))
    return trainable, fixed


def asge_row(dataset: str, n: int) -> dict[str, Any]:
    from asge.methods import create_method
    from asge.runconfig import resolve

    cfg = resolve("asge", dataset)
    model = create_method("asge", cfg, _info(dataset, n))
    trainable, fixed = _count(model)
    dims = model.extra_state_for_metrics()["goodness_dims"]
    from asge.backbone import layer_channels

    return {"method": "asge", "variant": "fixed projection", "classes": n, "channels": layer_channels(cfg),
            "last_layer_channels": layer_channels(cfg)[-1], "params_trainable": trainable,
            "fixed_projection_values": fixed, "goodness_dims_per_layer": dims, "goodness_dims_total": sum(dims)}


def cwc_widths(cfg: dict[str, Any], n: int, n_base: int, rule: str) -> tuple[list[int], list[int]]:
    """(channels, groups) of the CwC-FF spec `cfg` (written for n_base classes) for n classes."""
    groups = [n if g == n_base else g for g in cfg["groups"]]
    if rule == "per_class":
        chans = [int(c * n // n_base) for c in cfg["channels"]]
    else:
        chans = [int(math.ceil(c / n) * n) for c in cfg["channels"]]
    return chans, groups


def cwc_row(dataset: str, n: int, rule: str) -> dict[str, Any]:
    from asge.methods import create_method
    from asge.runconfig import resolve

    cfg = dict(resolve("cwc", dataset))
    n_base = _info(dataset, 10).num_classes if dataset != "cifar100" else 100
    cfg["channels"], cfg["groups"] = cwc_widths(cfg, n, n_base, rule)
    with torch.device("meta"):
        model = create_method("cwc", cfg, _info(dataset, n))
    trainable, fixed = _count(model)
    groups = list(model.class_groups)
    return {"method": "cwc", "variant": "channels per class kept" if rule == "per_class" else "fewest channels allowed",
            "classes": n, "channels": cfg["channels"], "last_layer_channels": cfg["channels"][-1],
            "params_trainable": trainable, "fixed_projection_values": fixed, "goodness_dims_per_layer": groups,
            "goodness_dims_total": sum(groups)}


def build(dataset: str, classes: list[int]) -> pd.DataFrame:
    rows = []
    for n in classes:
        rows.append(cwc_row(dataset, n, "per_class"))
        rows.append(cwc_row(dataset, n, "minimal"))
        rows.append(asge_row(dataset, n))
    return pd.DataFrame(rows)


def show(df: pd.DataFrame) -> pd.DataFrame:
    from wfutil import human_int, method_name

    return pd.DataFrame({
        "Method": [f"{method_name(m)} ({v})" for m, v in zip(df["method"], df["variant"])],
        "Classes N": df["classes"],
        "Conv channels": [str(c) for c in df["channels"]],
        "Trainable params": [human_int(v) for v in df["params_trainable"]],
        "Fixed projection values": [human_int(v) for v in df["fixed_projection_values"]],
        "Goodness values per sample": [f"{human_int(t)} {list(d)}" for t, d in
                                       zip(df["goodness_dims_total"], df["goodness_dims_per_layer"])],
    })


def main_snakemake(snakemake: Any) -> None:
    from wfutil import setup_logging, write_table

    log = setup_logging(snakemake)
    dataset, classes = snakemake.params.dataset, list(snakemake.params.classes)
    df = build(dataset, classes)
    data = df.assign(channels=df["channels"].map(str), goodness_dims_per_layer=df["goodness_dims_per_layer"].map(str))
    notes = [f"Computed from the model builders for {dataset}'s input size and the run files' architectures "
             f"with N classes; nothing is trained or measured.",
             "ASGE: convolutions do not change with N; its fixed random projection (never trained) holds "
             "N x goodness values. CwC-FF: every layer's channels are split into N class groups, so widths grow "
             "with N ('channels per class kept' scales the 10-class widths by N/10; 'fewest channels allowed' "
             "rounds each width up to a multiple of N); trainable params include the Sf head.",
             "Goodness values per sample: ASGE sum of C_l P_l^2 over layers (per layer in brackets); CwC-FF one "
             "class goodness per class group and layer."]
    paths = {fmt: getattr(snakemake.output, fmt) for fmt in ("md", "tex", "csv", "html")}
    write_table(show(df), data, paths, "T7. Channel scaling: parameters and goodness dimensions vs. class count",
                "tab:channel-scaling", notes)
    log.info("T7: %d rows", len(df))


if __name__ == "__main__":
    if "snakemake" in globals():
        main_snakemake(snakemake)  # noqa: F821 - injected by Snakemake's script directive
    else:
        print(build(sys.argv[1] if len(sys.argv) > 1 else "cifar10", [10, 100, 1000]).to_string())
