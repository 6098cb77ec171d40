"""Tiny data sets in real on-disk formats, written by the tests themselves."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, arr: np.ndarray) -> None:
    """An idx file as MNIST ships it: magic (0, 0, uint8 type 8, ndim), big-endian dims, data."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes())


def class_images(n: int, classes: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable images: each class lights up its own horizontal band, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    imgs = rng.integers(0, 60, size=(n, size, size)).astype(np.uint8)
    band = max(1, size // classes)
    for c in range(classes):
        rows = slice((c * band) % size, (c * band) % size + band)
        imgs[labels == c, rows, :] = 220
    return imgs, labels


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """MNIST-format idx files at <root>/<folder>/raw (readable by torchvision.datasets.MNIST)."""
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        x, y = class_images(n, 10, 28, s)
        write_idx(raw / f"{split}-images-idx3-ubyte", x)
        write_idx(raw / f"{split}-labels-idx1-ubyte", y)
    return Path(root)
