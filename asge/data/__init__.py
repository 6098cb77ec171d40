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

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Protocol

import torch

from asge import distributed
from asge.config import COMMON_KEYS
from asge.data.catalog import DATASETS, DataError, DatasetInfo, dataset_info
from asge.data.device_loader import SPLIT, SUBSET, TEST_SUBSET, DeviceLoader, derive_seed
from asge.runtime import auto_size, switch_on

__all__ = ["DATASETS", "DataBundle", "DataError", "DatasetInfo", "Loader", "build_data", "dataset_info"]

# Keys build_data reads, with their defaults from asge.config (so partial dicts work in tests and tools).
DATA_DEFAULTS: dict[str, Any] = {k: COMMON_KEYS[k].default for k in (
    "seed", "data_root", "data_mirrors", "offline", "cache_dir", "val_size", "subset_per_class",
    "test_subset_per_class", "image_size", "augment_crop_padding", "augment_hflip", "num_workers", "batch_size",
    "eval_batch_size", "channels_last")}


class Loader(Protocol):
    """What the engine iterates: (x float32 [B, C, H, W], y int64 [B]) on the device."""

    num_samples: int

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...


@dataclass
class DataBundle:
    """The data set's description and its three loaders."""

    info: DatasetInfo
    train: Loader
    val: Loader
    test: Loader

    def resident_bytes(self) -> int:
        """Bytes the three splits keep on the device (0 for loaders that stream from the host)."""
        return sum(getattr(loader, "resident_bytes", 0) for loader in (self.train, self.val, self.test))


def per_class_subset(labels: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Indices (sorted) of the first k samples of each class after a seeded shuffle."""
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[perm]
    order = torch.argsort(shuffled, stable=True)  # grouped by class, shuffled order kept inside a class
    sorted_labels = shuffled[order]
    first = torch.searchsorted(sorted_labels, sorted_labels, side="left")  # start of each sample's class run
    rank_in_class = torch.arange(len(labels)) - first
    return perm[order[rank_in_class < k]].sort().values


def split_indices(train_labels: torch.Tensor, test_labels: torch.Tensor, cfg: Mapping, name: str
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, val, test) indices: val held out of the training part, test from the test part."""
    seed = cfg["seed"]
    pool = torch.arange(len(train_labels))
    if cfg["subset_per_class"]:
        pool = per_class_subset(train_labels, cfg["subset_per_class"], derive_seed(seed, SUBSET))
    val_size = cfg["val_size"]
    if not 0 < val_size < len(pool):
        raise DataError(
            f"{name}: val_size={val_size} must be between 1 and the training pool size minus one "
            f"({len(pool)} images{' after subset_per_class' if cfg['subset_per_class'] else ''}); lower val_size"
        )
    perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(derive_seed(seed, SPLIT)))
    val, train = pool[perm[:val_size]].sort().values, pool[perm[val_size:]].sort().values
    test = torch.arange(len(test_labels))
    if cfg["test_subset_per_class"]:
        test = per_class_subset(test_labels, cfg["test_subset_per_class"], derive_seed(seed, TEST_SUBSET))
    return train, val, test


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
