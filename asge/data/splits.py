"""The split of a data set (train / validation hold-out / test indices) and the bundle of its three loaders."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Protocol

import torch

from asge.data.catalog import DataError, DatasetInfo
from asge.data.seeds import SPLIT, SUBSET, TEST_SUBSET, derive_seed


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
