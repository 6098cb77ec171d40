"""Find a small data set on disk and read it into uint8 tensors [N, C, H, W] (decoded once, cached).

Search order: every folder of cfg["data_mirrors"], then cfg["data_root"]; in each, the
torchvision format first, then an image-folder tree, then a tarball of such a tree. Relative
paths are taken from the current directory. When nothing is found and cfg["offline"] is
false, torchvision downloads the set into data_root; otherwise a DataError says what was
searched and how to provide the data.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import struct
import tarfile
import time
import uuid
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torchvision import datasets
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2 import functional as TF

from asge.data.catalog import DATASETS, DataError, DatasetInfo

log = logging.getLogger(__name__)

# torchvision 0.29 warns on every decode/encode call that torchvision.io's codecs will move to
# TorchCodec; they work in the pinned version and are 2x faster than PIL here, so silence
# exactly that message (a per-call catch_warnings is not thread-safe).
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)

CACHE_VERSION = 1  # bump when the cache format or the decoding changes


@dataclass
class Arrays:
    """A data set's official train and test parts as uint8 images and int64 labels (on CPU)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    origin: str  # where it was read from, for logs and error messages


# ----------------------------------------------------------------------------- locations
def search_roots(cfg: Mapping) -> list[Path]:
    """The mirrors (read-only) then data_root, absolute, without duplicates."""
    roots = [Path(os.path.abspath(Path(p).expanduser())) for p in [*cfg.get("data_mirrors", []), cfg["data_root"]]]
    return list(dict.fromkeys(roots))


def cache_dir(cfg: Mapping) -> Path:
    """Writable folder for decoded arrays and extracted tarballs (never a mirror)."""
    path = Path(os.path.abspath(Path(cfg.get("cache_dir") or Path(cfg["data_root"]) / ".asge-cache").expanduser()))
    for mirror in cfg.get("data_mirrors", []):
        m = Path(os.path.abspath(Path(mirror).expanduser()))
        if path == m or m in path.parents:
            raise DataError(f"cache_dir {path} lies inside the read-only mirror {m}; set cache_dir elsewhere")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data cache folder {path} ({e}); set cache_dir to a writable folder") from e
    return path


def folder_names(name: str) -> list[str]:
    """Folder (and tarball) names an image-folder copy of `name` may have."""
    return [f"{name}-jpeg", f"{name}-png", name]


# ----------------------------------------------------------------------------- torchvision formats
class _CIFAR10(datasets.CIFAR10):
    """torchvision's reader without the md5 check, so that files re-written in the same
    format (test fixtures, re-packed copies) load; truncation still fails on unpickling."""

    train_list = [[f, None] for f, _ in datasets.CIFAR10.train_list]
    test_list = [[f, None] for f, _ in datasets.CIFAR10.test_list]
    meta = {**datasets.CIFAR10.meta, "md5": None}


class _CIFAR100(datasets.CIFAR100):
    """As _CIFAR10, for CIFAR-100 (fine labels)."""

    train_list = [[f, None] for f, _ in datasets.CIFAR100.train_list]
    test_list = [[f, None] for f, _ in datasets.CIFAR100.test_list]
    meta = {**datasets.CIFAR100.meta, "md5": None}


_MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

# name -> (reader class, stock class for downloads, folder under the root, files in it)
_TORCHVISION = {
    "mnist": (datasets.MNIST, datasets.MNIST, "MNIST/raw", _MNIST_FILES),
    "fashionmnist": (datasets.FashionMNIST, datasets.FashionMNIST, "FashionMNIST/raw", _MNIST_FILES),
    "cifar10": (_CIFAR10, datasets.CIFAR10, "cifar-10-batches-py",
                [f for f, _ in _CIFAR10.train_list + _CIFAR10.test_list] + ["batches.meta"]),
    "cifar100": (_CIFAR100, datasets.CIFAR100, "cifar-100-python", ["train", "test", "meta"]),
}


def _check_idx(path: Path, name: str) -> None:
    """Compare an idx file's size with the size its header announces (names a truncated file)."""
    with path.open("rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:2] != b"\0\0" or not 1 <= head[3] <= 3 or head[2] != 8:
            raise DataError(f"{name}: {path} is not a uint8 idx file (bad header {head!r}); replace it with the original file")
        dims = struct.unpack(f">{head[3]}I", f.read(4 * head[3]))
    expected = 4 * (1 + len(dims)) + int(torch.tensor(dims).prod())
    if path.stat().st_size != expected:
        raise DataError(
            f"{name}: {path} is truncated or corrupt: its header announces {expected} bytes (shape {dims}) but the file "
            f"has {path.stat().st_size}; replace it with the original file"
        )


def _find_bad_pickle(folder: Path, files: list[str]) -> Path | None:
    """The first file in `folder` that does not unpickle (only called after a failure)."""
    for name in files:
        try:
            with (folder / name).open("rb") as f:
                pickle.load(f, encoding="latin1")
        except Exception:
            return folder / name
    return None


def read_torchvision(info: DatasetInfo, root: Path) -> Arrays | None:
    """Read `info.name` in torchvision's format under `root`; None when none of its files is there."""
    reader, _, sub, files = _TORCHVISION[info.name]
    folder = root / sub
    present = [f for f in files if (folder / f).is_file()]
    if not present:
        return None
    missing = sorted(set(files) - set(present))
    if missing:
        raise DataError(
            f"{info.name}: {folder} is incomplete, missing {missing}; expected all of {files}. "
            f"Restore the missing files or delete {folder} so that it is not picked up."
        )
    if reader in (datasets.MNIST, datasets.FashionMNIST):
        for f in files:
            _check_idx(folder / f, info.name)
    parts = []
    for train in (True, False):
        try:
            ds = reader(root=str(root), train=train, download=False)
        except Exception as e:
            bad = _find_bad_pickle(folder, files) if sub.startswith("cifar") else None
            where = bad or folder
            raise DataError(
                f"{info.name}: cannot read {where} ({type(e).__name__}: {e}); the file is corrupt or truncated. "
                f"Replace it with the original (layout: {folder}/{{{', '.join(files)}}})."
            ) from e
        x = torch.as_tensor(ds.data)
        # MNIST gives [N, H, W]; CIFAR gives numpy [N, H, W, C].
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        parts += [x.contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64)]
    return Arrays(*parts, origin=str(folder))


def download(info: DatasetInfo, data_root: Path) -> Arrays:
    """Let torchvision download `info.name` into data_root and read it back."""
    _, stock, _, _ = _TORCHVISION[info.name]
    for train in (True, False):
        stock(root=str(data_root), train=train, download=True)
    arrays = read_torchvision(info, data_root)
    if arrays is None:
        raise RuntimeError(f"torchvision reported success but no files are under {data_root}")
    return arrays


# ----------------------------------------------------------------------------- image folders
def _tree_digest(tree: Path) -> str:
    """Digest of every file's relative path, size and mtime under `tree`."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for fn in sorted(filenames):
            st = os.stat(os.path.join(dirpath, fn))
            h.update(f"{os.path.relpath(os.path.join(dirpath, fn), tree)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _file_digest(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()


def extract_tarball(tarball: Path, dirname: str, cache: Path) -> Path:
    """Extract `tarball` once into the cache and return the tree `<dirname>` inside it."""
    dest = cache / "extracted" / f"{dirname}-{_file_digest(tarball)[:16]}"
    if not dest.is_dir():
        tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        log.info("extracting %s into %s", tarball, dest)
        try:
            with tarfile.open(tarball) as tf:
                tf.extractall(tmp, filter="data")  # the "data" filter refuses absolute paths and links out
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataError(f"cannot extract {tarball} ({type(e).__name__}: {e}); the tarball is corrupt or "
                            f"truncated, replace it") from e
        try:
            os.rename(tmp, dest)  # atomic; a concurrent process may have won the race
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not dest.is_dir():
                raise
    return dest / dirname if (dest / dirname).is_dir() else dest


def _decode_split(split_dir: Path, info: DatasetInfo) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode every image of an ImageFolder split to uint8 [N, C, S, S] (S = the set's native size)."""
    try:
        folder = datasets.ImageFolder(str(split_dir))
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"{info.name}: {split_dir} is not a usable image folder ({e}); expected "
                        f"{split_dir}/<class>/*.jpg|png") from e
    size = DATASETS[info.name].image_size
    mode = ImageReadMode.GRAY if info.in_channels == 1 else ImageReadMode.RGB
    out = torch.empty(len(folder.samples), info.in_channels, size, size, dtype=torch.uint8)

    def decode(i: int) -> None:
        path = folder.samples[i][0]
        try:
            img = decode_image(read_file(path), mode=mode)
        except Exception as e:
            raise DataError(f"{info.name}: cannot decode {path} ({e}); the file is corrupt or truncated, "
                            f"replace or delete it") from e
        out[i] = img if img.shape[-2:] == (size, size) else TF.resize(img, [size, size], antialias=True)

    # torchvision decoders are torch ops, which release the GIL: the threads decode in parallel.
    with ThreadPoolExecutor(max(1, min(8, torch.get_num_threads()))) as pool:
        list(pool.map(decode, range(len(folder.samples)), chunksize=256))
    labels = torch.tensor(folder.targets, dtype=torch.int64)
    return out, labels, folder.classes


def _save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_cache(path: Path) -> dict:
    """Load a cache file safely (weights_only); a DataError naming it if it is damaged."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"the data cache file {path} is corrupt or truncated ({type(e).__name__}: {e}); "
                        f"delete it and it will be rebuilt from the source data") from e


def read_folder(info: DatasetInfo, tree: Path | None, tarball: Path | None, cache: Path) -> Arrays:
    """Decode an ImageFolder tree (or a tarball of one) once and cache the arrays in `cache`."""
    source = tarball or tree
    digest = _file_digest(tarball) if tarball else _tree_digest(tree)
    key = hashlib.sha256(f"{CACHE_VERSION}\0{info.name}\0{info.in_channels}\0{source}\0{digest}".encode())
    cache_file = cache / f"{info.name}-{key.hexdigest()[:16]}.pt"
    if cache_file.is_file():
        d = load_cache(cache_file)
        log.info("%s: loaded decoded images from cache %s", info.name, cache_file)
        return Arrays(d["train_x"], d["train_y"], d["test_x"], d["test_y"], origin=f"{source} (cache {cache_file})")
    if tarball:
        tree = extract_tarball(tarball, tarball.name.removesuffix(".tar.gz"), cache)
    for split in ("train", "test"):
        if not (tree / split).is_dir():
            raise DataError(f"{info.name}: {tree} has no {split}/ folder; expected {tree}/{{train,test}}/<class>/*.jpg|png")
    start = time.perf_counter()
    train_x, train_y, classes = _decode_split(tree / "train", info)
    test_x, test_y, test_classes = _decode_split(tree / "test", info)
    if classes != test_classes:
        raise DataError(f"{info.name}: {tree}/train and {tree}/test have different class folders "
                        f"({len(classes)} vs {len(test_classes)}); both need the same <class> names")
    log.info("%s: decoded %d images from %s in %.1f s; caching in %s",
             info.name, len(train_y) + len(test_y), source, time.perf_counter() - start, cache_file)
    _save_atomic({"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
                  "classes": classes, "source": str(source)}, cache_file)
    return Arrays(train_x, train_y, test_x, test_y, origin=str(source))


# ----------------------------------------------------------------------------- entry point
def _validate(arrays: Arrays, info: DatasetInfo) -> Arrays:
    """Shapes, dtypes and label range agree with the catalog (catches wrong or mixed-up data)."""
    size = DATASETS[info.name].image_size
    for part, x, y in (("train", arrays.train_x, arrays.train_y), ("test", arrays.test_x, arrays.test_y)):
        problem = None
        if x.dtype != torch.uint8 or tuple(x.shape[1:]) != (info.in_channels, size, size):
            problem = f"images are {tuple(x.shape)} {x.dtype}, expected [N, {info.in_channels}, {size}, {size}] uint8"
        elif len(x) != len(y) or len(y) == 0:
            problem = f"{len(x)} images but {len(y)} labels"
        elif int(y.min()) < 0 or int(y.max()) >= info.num_classes:
            problem = f"labels span {int(y.min())}..{int(y.max())}, expected 0..{info.num_classes - 1}"
        elif len(torch.unique(y)) != info.num_classes:
            problem = f"only {len(torch.unique(y))} of {info.num_classes} classes occur"
        if problem:
            raise DataError(f"{info.name} ({part} part of {arrays.origin}): {problem}")
    return arrays


def _layouts(info: DatasetInfo, root: Path) -> list[str]:
    where = []
    if info.name in _TORCHVISION:
        _, _, sub, files = _TORCHVISION[info.name]
        where.append(f"{root / sub}/{{{', '.join(files)}}} (torchvision format)")
    dirs = ",".join(folder_names(info.name))
    where.append(f"{root}/{{{dirs}}}/{{train,test}}/<class>/*.jpg|png (image folder; class index = sorted names)")
    where.append(f"{root}/{{{dirs}}}.tar.gz (tarball of such a folder)")
    return where


def _not_found(info: DatasetInfo, cfg: Mapping, roots: list[Path], download_error: str | None) -> DataError:
    lines = [f"data set {info.name!r} not found. Searched, in order:"]
    lines += [f"  {w}" for root in roots for w in _layouts(info, root)]
    if download_error:
        lines.append(f"Downloading it with torchvision into {roots[-1]} failed: {download_error}")
    fixes = ["put the data in one of those layouts", "point data_root or data_mirrors at where it is"]
    if info.name in _TORCHVISION:
        stock = _TORCHVISION[info.name][1].__name__
        fixes.insert(1, f"on a machine with internet run torchvision.datasets.{stock}(ROOT, download=True) "
                        f"and copy ROOT's contents into {roots[-1]}")
        if cfg.get("offline"):
            fixes.append("set offline: false to let torchvision download it")
    lines.append("To fix: " + "; or ".join(fixes) + ".")
    return DataError("\n".join(lines))


def load_arrays(info: DatasetInfo, cfg: Mapping) -> Arrays:
    """The official train/test parts of a small data set as uint8 CPU tensors at its native size."""
    roots = search_roots(cfg)
    for root in roots:
        if info.name in _TORCHVISION:
            arrays = read_torchvision(info, root)
            if arrays is not None:
                return _validate(arrays, info)
        for d in folder_names(info.name):
            tree, tarball = root / d, root / f"{d}.tar.gz"
            if (tree / "train").is_dir() or (tree / "test").is_dir():
                return _validate(read_folder(info, tree, None, cache_dir(cfg)), info)
            if tarball.is_file():
                return _validate(read_folder(info, None, tarball, cache_dir(cfg)), info)
    download_error = None
    if not cfg.get("offline") and info.name in _TORCHVISION:
        try:
            log.info("%s not found locally; downloading it with torchvision into %s", info.name, roots[-1])
            return _validate(download(info, roots[-1]), info)
        except DataError:
            raise
        except Exception as e:
            download_error = f"{type(e).__name__}: {e}"
    raise _not_found(info, cfg, roots, download_error)


def resize_images(x: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 [N, C, H, W] to size x size (antialiased), in chunks to bound memory."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return torch.cat([TF.resize(x[i:i + chunk], [size, size], antialias=True) for i in range(0, len(x), chunk)])
