"""Data layer: the data set catalog and `build_data`, which turns a config into train/val/test loaders.

Selection order for the training pool (all seeded with cfg["seed"]): take the official
training part; if subset_per_class = k, keep the first k images of each class after a
seeded shuffle; then hold val_size images of what is left out as the validation split.
The test loader reads the official test part (ImageNet: its val/ folder), reduced the same
way when test_subset_per_class is set. Train loaders are sharded over DDP ranks; val and
test loaders are not (every rank evaluates everything); rank 0 alone builds the data cache
while the other ranks wait (asge.distributed.rank_zero_first). See docs/data.md.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from asge import distributed
from asge.config import COMMON_KEYS
from asge.data.catalog import DATASETS, DataError, DatasetInfo, dataset_info
from asge.data.device_loader import DeviceLoader
from asge.data.splits import DataBundle, Loader, per_class_subset, split_indices
from asge.runtime import auto_size, switch_on

__all__ = ["DATASETS", "DataBundle", "DataError", "DatasetInfo", "Loader", "build_data", "dataset_info", "per_class_subset",
           "split_indices"]

# Keys build_data reads, with their defaults from asge.config (so partial dicts work in tests and tools).
DATA_DEFAULTS: dict[str, Any] = {k: COMMON_KEYS[k].default for k in (
    "seed", "data_root", "data_mirrors", "offline", "cache_dir", "val_size", "subset_per_class",
    "test_subset_per_class", "image_size", "augment_crop_padding", "augment_hflip", "num_workers", "batch_size",
    "eval_batch_size", "channels_last")}


def resolve(cfg: Mapping, world_size: int) -> dict:
    """cfg with defaults filled in for missing data keys; checks the DDP batch split."""
    full = {**DATA_DEFAULTS, **cfg}
    if full["batch_size"] % world_size:
        raise DataError(f"batch_size={full['batch_size']} is not divisible by the {world_size} DDP processes; "
                        f"choose a multiple of {world_size}")
    return full


def build_data(cfg: Mapping, device: torch.device, rank: int = 0, world_size: int = 1) -> DataBundle:
    """Find, split and load cfg["dataset"]; the train loader yields this rank's shard."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    cfg = resolve(cfg, world_size)
    device = torch.device(device)
    info = dataset_info(cfg["dataset"], cfg)
    # Lazy imports: torchvision takes seconds to import, and `from asge.data import DatasetInfo` should not.
    # Under DDP, rank 0 finds the data and builds or verifies the cache (decoded arrays, an
    # extracted tarball, a torchvision download) while the other ranks wait at a barrier; they
    # then find everything in place and only read it, so the cache is written once, not raced
    # by every process.
    if info.name == "imagenet":
        from asge.data.imagenet import build_imagenet, find_tree

        with distributed.rank_zero_first():
            find_tree(info, cfg)  # extracts a tarball once; build_imagenet's own lookup then finds it
        return build_imagenet(cfg, info, device, rank, world_size)

    from asge.data.sources import load_arrays, resize_images

    with distributed.rank_zero_first():
        arrays = load_arrays(info, cfg)
    train, val, test = split_indices(arrays.train_y, arrays.test_y, cfg, info.name)
    size = info.image_size

    def images(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return resize_images(x[idx], size)

    channels_last = switch_on(cfg, "channels_last", device)  # auto: on for CUDA only
    pad = info.crop_padding if cfg["augment_crop_padding"] is None else cfg["augment_crop_padding"]
    hflip = info.hflip if cfg["augment_hflip"] is None else cfg["augment_hflip"]
    common = dict(info=info, device=device, channels_last=channels_last)
    train_loader = DeviceLoader(
        images(arrays.train_x, train), arrays.train_y[train], batch_size=cfg["batch_size"] // world_size,
        shuffle=True, crop_padding=pad, hflip=hflip, seed=cfg["seed"], rank=rank, world_size=world_size, **common,
    )
    eval_bs = auto_size(cfg, "eval_batch_size", device)
    val_loader = DeviceLoader(images(arrays.train_x, val), arrays.train_y[val], batch_size=eval_bs, shuffle=False,
                              **common)
    test_loader = DeviceLoader(images(arrays.test_x, test), arrays.test_y[test], batch_size=eval_bs, shuffle=False,
                               **common)
    return DataBundle(info=info, train=train_loader, val=val_loader, test=test_loader)
