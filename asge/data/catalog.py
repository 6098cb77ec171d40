"""The data sets the suite knows: class count, input shape, normalisation and default augmentation."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from asge.config import ConfigError


class DataError(RuntimeError):
    """Any problem with finding, reading or splitting a data set.

    Messages name the data set, the path(s) involved, the expected layout and how to fix it.
    """


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set (image_size = side of the square input)."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int  # default random-crop padding for training (0 = no crop)
    hflip: bool  # default random horizontal flip for training
    display_name: str = ""  # the name tables and figures print (e.g. "CIFAR-10")

    def __post_init__(self) -> None:
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)


# Means/stds are the usual per-channel statistics of each training set (pixel values in [0, 1]).
DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", 10, 1, 28, (0.1307,), (0.3081,), 0, False, "MNIST"),
    "fashionmnist": DatasetInfo("fashionmnist", 10, 1, 28, (0.2860,), (0.3530,), 0, False, "FashionMNIST"),
    "cifar10": DatasetInfo(
        "cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 4, True, "CIFAR-10"
    ),
    "cifar100": DatasetInfo(
        "cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 4, True, "CIFAR-100"
    ),
    # ImageNet is served at 64 px by default (configurable with image_size); crops come from
    # RandomResizedCrop, so crop_padding does not apply there.
    "imagenet": DatasetInfo(
        "imagenet", 1000, 3, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0, True, "ImageNet"
    ),
}


def dataset_info(name: str, cfg: Mapping | None = None) -> DatasetInfo:
    """The DatasetInfo of `name`, with cfg["image_size"] applied when it is set."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}")
    info = DATASETS[name]
    cfg = cfg or {}
    size = cfg.get("image_size")
    if size is not None and size != info.image_size:
        info = dataclasses.replace(info, image_size=int(size))
    for key, field in (("input_mean", "mean"), ("input_std", "std")):
        value = cfg.get(key)
        if value is None:
            continue
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and (v > 0 or field == "mean")
                 for v in value)
        if len(value) != info.in_channels or not ok:
            kind = "number(s)" if field == "mean" else "positive number(s)"
            raise ConfigError(f"config key {key!r}: {value!r} must be {info.in_channels} {kind}, "
                              f"one per input channel of {name}")
        info = dataclasses.replace(info, **{field: tuple(float(v) for v in value)})
    return info
