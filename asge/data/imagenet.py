"""ImageNet from an ImageFolder tree, served by a torch DataLoader with worker processes.

Layout: `<root>/<imagenet|imagenet-sample>/{train,val}/<wnid>/*.JPEG` (or `<dir>.tar.gz`, extracted
once into the cache). Workers decode and crop with torchvision transforms and return uint8
tensors (4x less to copy than float); normalisation runs on the device. The validation split
is held out of train/ (seeded); the test loader reads val/.

Augmentation randomness is tied to (seed, epoch, position in the permutation): the sampler
hands every worker a per-sample seed with the index, so persistent workers and a resumed run
produce the same crops as an uninterrupted one.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Mapping

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import default_loader

from asge.data.catalog import DataError, DatasetInfo
from asge.data.device_loader import _normaliser
from asge.data.seeds import AUGMENT, derive_seed, epoch_shard
from asge.data.sources import cache_dir, extract_tarball, search_roots
from asge.data.splits import DataBundle, split_indices
from asge.runtime import auto_size, switch_on

IMAGENET_DIRS = ("imagenet", "imagenet-sample")


def find_tree(info: DatasetInfo, cfg: Mapping) -> Path:
    """The first ImageNet tree (or extracted tarball) in the mirrors, then data_root."""
    searched = []
    for root in search_roots(cfg):
        for d in IMAGENET_DIRS:
            tree, tarball = root / d, root / f"{d}.tar.gz"
            searched += [f"{tree}/{{train,val}}/<wnid>/*.JPEG", str(tarball)]
            if (tree / "train").is_dir():
                return tree
            if tarball.is_file():
                return extract_tarball(tarball, d, cache_dir(cfg))
    raise DataError(
        f"data set {info.name!r} not found (it is never downloaded). Searched, in order:\n  " + "\n  ".join(searched)
        + f"\nTo fix: prepare ImageNet as an ImageFolder tree <root>/imagenet/{{train,val}}/<wnid>/*.JPEG with "
        f"{info.num_classes} class folders in each, and point data_root or data_mirrors at <root>."
    )


def check_classes(tree: Path, info: DatasetInfo) -> None:
    """train/ and val/ must have exactly num_classes class folders, the same in both."""
    found = {}
    for split in ("train", "val"):
        d = tree / split
        found[split] = sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []
        if len(found[split]) != info.num_classes:
            raise DataError(
                f"{info.name}: {d} has {len(found[split])} class folders, expected exactly {info.num_classes} "
                f"(layout {tree}/{{train,val}}/<wnid>/*.JPEG); a partial tree would silently change the task"
            )
    if found["train"] != found["val"]:
        diff = sorted(set(found["train"]) ^ set(found["val"]))[:5]
        raise DataError(f"{info.name}: {tree}/train and {tree}/val have different class folders (e.g. {diff})")


def _image_folder(split_dir: Path, info: DatasetInfo) -> ImageFolder:
    try:
        return ImageFolder(str(split_dir))
    except (FileNotFoundError, OSError) as e:  # e.g. a class folder without images
        raise DataError(f"{info.name}: {split_dir} is not a usable image folder ({e}); expected "
                        f"{split_dir}/<wnid>/*.JPEG") from e


class FileDataset(Dataset):
    """(path, label) samples with a transform; an item is an index or (index, augmentation seed)."""

    def __init__(self, samples: list[tuple[str, int]], transform: transforms.Compose) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        path, label = self.samples[index]
        try:
            img = default_loader(path)
        except Exception as e:
            raise DataError(f"cannot read image {path} ({type(e).__name__}: {e}); replace or delete the file") from e
        if seed is None:
            return self.transform(img), label
        # fork_rng keeps the seeding from touching the caller's RNG when num_workers == 0.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(img), label


class EpochSampler(Sampler):
    """This rank's shard of the epoch's seeded permutation, as (index, per-sample seed) pairs."""

    def __init__(self, n: int, seed: int, rank: int, world_size: int) -> None:
        self.n, self.seed, self.rank, self.world_size, self.epoch = n, seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        positions, order = epoch_shard(self.n, self.seed, self.epoch, self.rank, self.world_size)
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, AUGMENT))
        seeds = torch.randint(0, 2**62, (self.n,), generator=g)[positions]
        return iter(zip(order.tolist(), seeds.tolist()))


class FolderLoader:
    """A DataLoader whose uint8 batches are moved to the device and normalised there."""

    def __init__(self, dataset: FileDataset, info: DatasetInfo, device: torch.device, batch_size: int,
                 num_workers: int, sampler: EpochSampler | None = None, channels_last: bool = False) -> None:
        self.device, self.sampler, self.channels_last = device, sampler, channels_last
        self.num_samples = len(sampler) if sampler is not None else len(dataset)
        self.batch_size = batch_size
        self.scale, self.shift = _normaliser(info, device)
        self.loader = DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=num_workers,
            persistent_workers=num_workers > 0, pin_memory=device.type == "cuda", drop_last=False,
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's permutation and augmentation (no effect on evaluation loaders)."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield torch.addcmul(self.shift, x.float(), self.scale), y.to(self.device, non_blocking=True)


def build_imagenet(cfg: Mapping, info: DatasetInfo, device: torch.device, rank: int, world_size: int) -> DataBundle:
    """DataBundle for ImageNet: train/val from train/ (seeded hold-out), test from val/."""
    tree = find_tree(info, cfg)
    check_classes(tree, info)
    train_set, test_set = _image_folder(tree / "train", info), _image_folder(tree / "val", info)
    train_labels, test_labels = torch.tensor(train_set.targets), torch.tensor(test_set.targets)
    train_idx, val_idx, test_idx = split_indices(train_labels, test_labels, cfg, info.name)

    s = info.image_size
    hflip = info.hflip if cfg["augment_hflip"] is None else cfg["augment_hflip"]
    train_tf = transforms.Compose([transforms.RandomResizedCrop(s), *([transforms.RandomHorizontalFlip()] if hflip else []),
                                   transforms.PILToTensor()])
    eval_tf = transforms.Compose([transforms.Resize(int(s * 1.14)), transforms.CenterCrop(s), transforms.PILToTensor()])

    def subset(folder: ImageFolder, idx: torch.Tensor, tf: transforms.Compose) -> FileDataset:
        return FileDataset([folder.samples[i] for i in idx.tolist()], tf)

    workers = cfg["num_workers"]
    channels_last = switch_on(cfg, "channels_last", device)  # auto: on for CUDA only
    train_ds = subset(train_set, train_idx, train_tf)
    sampler = EpochSampler(len(train_ds), cfg["seed"], rank, world_size)
    common = dict(info=info, device=device, channels_last=channels_last)
    eval_bs = auto_size(cfg, "eval_batch_size", device)
    return DataBundle(
        info=info,
        train=FolderLoader(train_ds, batch_size=cfg["batch_size"] // world_size, num_workers=workers,
                           sampler=sampler, **common),
        val=FolderLoader(subset(train_set, val_idx, eval_tf), batch_size=eval_bs,
                         num_workers=workers, **common),
        test=FolderLoader(subset(test_set, test_idx, eval_tf), batch_size=eval_bs,
                          num_workers=workers, **common),
    )
