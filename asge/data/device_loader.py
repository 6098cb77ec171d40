"""Batches of a small data set that lives on the device as uint8; augmentation runs there too.

Every random choice of an epoch (the permutation, each sample's crop offset and flip) comes
from generators seeded with (seed, epoch, stream) only, so a run resumed at epoch e sees the
same batches as one that never stopped. Crop and flip are one vectorised gather: the data set
is zero-padded once and stored next to its mirror image, and a strided view exposes every
crop window, so a batch is `windows[sample (+ N if flipped), dy, dx]` (2.5x faster on CPU
than gathering single pixels; costs a second copy of the training images when flipping).
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F

from asge.data.catalog import DatasetInfo
from asge.data.seeds import AUGMENT, derive_seed, epoch_shard


def _normaliser(info: DatasetInfo, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with x_norm = x_uint8 * scale + shift, shaped [1, C, 1, 1]."""
    mean = torch.tensor(info.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return 1.0 / (255.0 * std), -mean / std


class DeviceLoader:
    """Loader over uint8 images [N, C, H, W] kept on `device`; yields normalised float32 batches.

    shuffle=True (training): a new seeded permutation per epoch, sharded over ranks, random
    crop (zero padding `crop_padding`) and horizontal flip; the last partial batch is kept.
    shuffle=False (evaluation): fixed order, no augmentation, no sharding.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        info: DatasetInfo,
        device: torch.device,
        batch_size: int,
        *,
        shuffle: bool,
        crop_padding: int = 0,
        hflip: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ) -> None:
        self.info, self.device, self.batch_size = info, device, batch_size
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.pad = crop_padding if shuffle else 0
        self.hflip = hflip and shuffle
        self.channels_last = channels_last
        self.labels = labels.to(device)
        n, c, h, w = images.shape
        data = images.to(device)
        if self.pad:
            data = F.pad(data, (self.pad,) * 4)  # zero padding, once, instead of per batch
        if self.hflip:
            # A flipped crop at column offset dx of an image is the crop at 2*pad - dx of its mirror.
            data = torch.cat([data, data.flip(-1)])
        self.images = data = data.contiguous()  # the strided view below assumes NCHW-contiguous storage
        if self.pad or self.hflip:
            _, _, hp, wp = data.shape
            k = 2 * self.pad + 1
            # windows[i, dy, dx] is the h x w crop of image i at (dy, dx); a view, no copy.
            self._windows = data.as_strided((len(data), k, k, c, h, w), (c * hp * wp, wp, 1, hp * wp, wp, 1))
        self.scale, self.shift = _normaliser(info, device)
        self.num_samples = n // world_size if shuffle else n
        self.epoch = 0

    @property
    def resident_bytes(self) -> int:
        """Bytes of images (padded, with mirrors) and labels held on the device."""
        return self.images.nbytes + self.labels.nbytes

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def _augmentation(self, positions: torch.Tensor, order: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(source image, dy, dx) for every sample of this rank's epoch. Drawn for the whole
        permutation, so a sample's augmentation does not depend on rank or world size."""
        n = len(self.labels)
        g = torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, self.epoch, AUGMENT))
        offsets = torch.randint(0, 2 * self.pad + 1, (2, n), generator=g, device=self.device)
        flips = torch.rand(n, generator=g, device=self.device) < 0.5
        pos = positions.to(self.device)
        dy, dx = offsets[0, pos], offsets[1, pos]
        if not self.hflip:
            return order, dy, dx
        flip = flips[pos]
        return torch.where(flip, order + n, order), dy, torch.where(flip, 2 * self.pad - dx, dx)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 -> normalised float32 (channels_last if asked; elementwise ops keep the format)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return torch.addcmul(self.shift, x.float(), self.scale)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        b = self.batch_size
        if not self.shuffle:
            for s in range(0, self.num_samples, b):
                yield self._finish(self.images[s:s + b]), self.labels[s:s + b]
            return
        positions, order = epoch_shard(len(self.labels), self.seed, self.epoch, self.rank, self.world_size)
        order = order.to(self.device)
        if not (self.pad or self.hflip):
            for s in range(0, len(order), b):
                idx = order[s:s + b]
                yield self._finish(self.images[idx]), self.labels[idx]
            return
        src, dy, dx = self._augmentation(positions, order)
        for s in range(0, len(order), b):
            yield self._finish(self._windows[src[s:s + b], dy[s:s + b], dx[s:s + b]]), self.labels[order[s:s + b]]
