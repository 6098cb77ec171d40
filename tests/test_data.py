"""Tests of asge.data on tiny files written in each real on-disk format, plus the real offline copies."""
from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg, encode_png

from asge.data import DATASETS, DataError, build_data, dataset_info, per_class_subset, sources, split_indices
from asge.data.device_loader import DeviceLoader
from asge.data.seeds import epoch_shard
from tests.fakedata import write_idx

# torchvision 0.29 deprecates torchvision.io's codecs (used here and in asge.data.sources) in favour of TorchCodec.
CPU = torch.device("cpu")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the test machine's cores are shared


# ----------------------------------------------------------------------------- writers of real formats
def images(n: int, c: int, s: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, c, s, s), dtype=np.uint8)


def balanced_labels(n: int, k: int) -> np.ndarray:
    return np.arange(n) % k


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 20) -> dict:
    raw = root / folder / "raw"
    data = {"train_x": images(n_train, 1, 28, 0), "train_y": balanced_labels(n_train, 10),
            "test_x": images(n_test, 1, 28, 1), "test_y": balanced_labels(n_test, 10)}
    write_idx(raw / "train-images-idx3-ubyte", data["train_x"][:, 0])
    write_idx(raw / "train-labels-idx1-ubyte", data["train_y"].astype(np.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", data["test_x"][:, 0])
    write_idx(raw / "t10k-labels-idx1-ubyte", data["test_y"].astype(np.uint8))
    return data


def write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 20) -> dict:
    d = root / "cifar-10-batches-py"
    train_x = images(5 * per_batch, 3, 32, 2)
    train_y = balanced_labels(5 * per_batch, 10)
    for b in range(5):
        s = slice(b * per_batch, (b + 1) * per_batch)
        write_pickle(d / f"data_batch_{b + 1}", {"data": train_x[s].reshape(per_batch, -1), "labels": train_y[s].tolist()})
    test_x, test_y = images(n_test, 3, 32, 3), balanced_labels(n_test, 10)
    write_pickle(d / "test_batch", {"data": test_x.reshape(n_test, -1), "labels": test_y.tolist()})
    write_pickle(d / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> dict:
    d = root / "cifar-100-python"
    train_x, train_y = images(n_train, 3, 32, 4), balanced_labels(n_train, 100)
    test_x, test_y = images(n_test, 3, 32, 5), balanced_labels(n_test, 100)
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        write_pickle(d / name, {"data": x.reshape(len(x), -1), "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist()})
    write_pickle(d / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                              "coarse_label_names": [f"c{i}" for i in range(20)]})
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


CLASSES = sorted(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])


def write_folder(root: Path, dirname: str = "cifar10-jpeg", per_class: tuple[int, int] = (4, 2),
                 size: int = 32) -> dict:
    """PNG (lossless, so pixels can be compared) plus one JPEG per class; names in random order."""
    out = {}
    for split, n in zip(("train", "test"), per_class):
        xs, ys = [], []
        for label, cls in enumerate(CLASSES):
            d = root / dirname / split / cls
            d.mkdir(parents=True)
            for i, img in enumerate(images(n, 3, size, 100 * label + (split == "test"))):
                t = torch.from_numpy(img)
                if i == n - 1:
                    (d / f"{i:04d}.jpg").write_bytes(encode_jpeg(t, quality=100).numpy().tobytes())
                    img = None  # lossy: not compared
                else:
                    (d / f"{i:04d}.png").write_bytes(encode_png(t).numpy().tobytes())
                xs.append(img)
                ys.append(label)
        out[f"{split}_x"], out[f"{split}_y"] = xs, np.array(ys)
    return out


def make_tarball(tree_parent: Path, dirname: str, dest: Path) -> Path:
    tar_path = dest / f"{dirname}.tar.gz"
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w:gz") as tf:
        tf.add(tree_parent / dirname, arcname=dirname)
    return tar_path


def cfg_for(tmp_path: Path, dataset: str, mirror: Path | None = None, **kw) -> dict:
    cfg = {"dataset": dataset, "seed": 0, "data_root": str(tmp_path / "root"),
           "data_mirrors": [str(mirror)] if mirror else [], "offline": True, "cache_dir": None,
           "val_size": 10, "subset_per_class": None, "test_subset_per_class": None, "image_size": None,
           "augment_crop_padding": None, "augment_hflip": None, "batch_size": 16, "eval_batch_size": 7,
           "num_workers": 0, "channels_last": True}
    cfg.update(kw)
    return cfg


def unnormalise(x: torch.Tensor, name: str) -> torch.Tensor:
    info = DATASETS[name]
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return (x * std + mean).mul(255).round().clamp(0, 255).to(torch.uint8)


def collect(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


# ----------------------------------------------------------------------------- catalog
def test_catalog():
    assert set(DATASETS) == {"mnist", "fashionmnist", "cifar10", "cifar100", "imagenet"}
    assert dataset_info("imagenet").image_size == 64
    assert dataset_info("imagenet", {"image_size": 32}).image_size == 32
    assert dataset_info("cifar10", {"image_size": None}) == DATASETS["cifar10"]
    assert (DATASETS["cifar10"].crop_padding, DATASETS["cifar10"].hflip) == (4, True)
    assert (DATASETS["mnist"].crop_padding, DATASETS["mnist"].hflip) == (0, False)
    with pytest.raises(ValueError, match="cifar100"):
        dataset_info("svhn")


# ----------------------------------------------------------------------------- formats
@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_idx_format(tmp_path, name, folder):
    data = write_mnist(tmp_path / "mirror", folder)
    b = build_data(cfg_for(tmp_path, name, tmp_path / "mirror"), CPU)
    assert (b.train.num_samples, b.val.num_samples, b.test.num_samples) == (50, 10, 20)
    assert (len(b.train), len(b.val), len(b.test)) == (4, 2, 3)  # 16+16+16+2, 7+3, 7+7+6
    x, y = collect(b.test)
    assert x.shape == (20, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(unnormalise(x, name), torch.from_numpy(data["test_x"]))
    assert torch.equal(y, torch.from_numpy(data["test_y"]).long())
    _, ytr = collect(b.train)
    _, yva = collect(b.val)
    assert torch.equal(torch.bincount(torch.cat([ytr, yva]), minlength=10), torch.full((10,), 6))


@pytest.mark.parametrize("name,writer,classes", [("cifar10", write_cifar10, 10), ("cifar100", write_cifar100, 100)])
def test_cifar_pickles(tmp_path, name, writer, classes):
    data = writer(tmp_path / "root")  # found in data_root when the mirror lacks it
    b = build_data(cfg_for(tmp_path, name, tmp_path / "empty-mirror", val_size=20), CPU)
    assert b.info.num_classes == classes
    x, y = collect(b.test)
    assert x.shape == (len(data["test_y"]), 3, 32, 32)
    assert torch.equal(unnormalise(x, name), torch.from_numpy(data["test_x"]))
    assert torch.equal(y, torch.from_numpy(data["test_y"]).long())
    assert b.train.num_samples + b.val.num_samples == len(data["train_y"])


def test_image_folder_tree(tmp_path):
    data = write_folder(tmp_path / "mirror")
    b = build_data(cfg_for(tmp_path, "cifar10", tmp_path / "mirror", val_size=5), CPU)
    x, y = collect(b.test)
    assert x.shape == (20, 3, 32, 32)
    assert torch.equal(y, torch.from_numpy(data["test_y"]))  # class index = sorted folder names
    got = unnormalise(x, "cifar10")
    for i, img in enumerate(data["test_x"]):
        if img is not None:
            assert torch.equal(got[i], torch.from_numpy(img))
    assert b.train.num_samples + b.val.num_samples == 40


def test_tarball_extracted_into_cache_and_mirror_untouched(tmp_path):
    write_folder(tmp_path / "src")
    mirror = tmp_path / "mirror"
    make_tarball(tmp_path / "src", "cifar10-jpeg", mirror)
    before = sorted(mirror.rglob("*"))
    cfg = cfg_for(tmp_path, "cifar10", mirror, val_size=5)
    b = build_data(cfg, CPU)
    assert sorted(mirror.rglob("*")) == before
    cache = tmp_path / "root" / ".asge-cache"
    assert len(list(cache.glob("cifar10-*.pt"))) == 1
    assert len(list((cache / "extracted").glob("cifar10-jpeg-*/cifar10-jpeg/train/airplane/*"))) == 4
    ref = build_data(cfg_for(tmp_path / "x", "cifar10", tmp_path / "src", val_size=5), CPU)
    assert torch.equal(collect(b.test)[0], collect(ref.test)[0])


def test_cache_created_once_and_reused(tmp_path, monkeypatch):
    write_folder(tmp_path / "mirror")
    cfg = cfg_for(tmp_path, "cifar10", tmp_path / "mirror", val_size=5, cache_dir=str(tmp_path / "cache"))
    first = collect(build_data(cfg, CPU).test)[0]
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"

    def no_decode(*a, **k):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(sources, "_decode_split", no_decode)
    assert torch.equal(collect(build_data(cfg, CPU).test)[0], first)
    assert list((tmp_path / "cache").iterdir()) == files
    # A changed source gets a new key (and would decode again).
    png = next((tmp_path / "mirror").rglob("*.png"))
    os.utime(png, ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        build_data(cfg, CPU)


# ----------------------------------------------------------------------------- damaged or missing data
def test_truncated_idx_names_file(tmp_path):
    write_mnist(tmp_path / "mirror")
    f = tmp_path / "mirror" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*truncated"):
        build_data(cfg_for(tmp_path, "mnist", tmp_path / "mirror"), CPU)


def test_incomplete_torchvision_folder(tmp_path):
    write_mnist(tmp_path / "mirror")
    (tmp_path / "mirror" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        build_data(cfg_for(tmp_path, "mnist", tmp_path / "mirror"), CPU)


def test_truncated_pickle_names_file(tmp_path):
    write_cifar10(tmp_path / "mirror")
    f = tmp_path / "mirror" / "cifar-10-batches-py" / "data_batch_3"
    f.write_bytes(f.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3"):
        build_data(cfg_for(tmp_path, "cifar10", tmp_path / "mirror"), CPU)


def test_corrupt_jpeg_names_file(tmp_path):
    write_folder(tmp_path / "mirror")
    bad = tmp_path / "mirror" / "cifar10-jpeg" / "train" / "dog" / "0003.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match="dog/0003.jpg"):
        build_data(cfg_for(tmp_path, "cifar10", tmp_path / "mirror", val_size=5), CPU)
    assert not list((tmp_path / "root" / ".asge-cache").glob("*.pt"))  # no partial cache


def test_corrupt_cache_names_file(tmp_path):
    write_folder(tmp_path / "mirror")
    cfg = cfg_for(tmp_path, "cifar10", tmp_path / "mirror", val_size=5)
    build_data(cfg, CPU)
    cache_file = next((tmp_path / "root" / ".asge-cache").glob("cifar10-*.pt"))
    cache_file.write_bytes(cache_file.read_bytes()[:1000])
    with pytest.raises(DataError, match=cache_file.name):
        build_data(cfg, CPU)


def test_truncated_tarball_names_file(tmp_path):
    write_folder(tmp_path / "src")
    tar_path = make_tarball(tmp_path / "src", "cifar10-jpeg", tmp_path / "mirror")
    tar_path.write_bytes(tar_path.read_bytes()[:3000])
    with pytest.raises(DataError, match="cifar10-jpeg.tar.gz"):
        build_data(cfg_for(tmp_path, "cifar10", tmp_path / "mirror", val_size=5), CPU)


def test_wrong_class_count(tmp_path):
    write_folder(tmp_path / "mirror")
    for f in (tmp_path / "mirror" / "cifar10-jpeg").glob("*/truck"):
        for p in f.iterdir():
            p.unlink()
        f.rmdir()
    with pytest.raises(DataError, match="9 of 10 classes"):
        build_data(cfg_for(tmp_path, "cifar10", tmp_path / "mirror", val_size=5), CPU)


def test_missing_offline_lists_searched_paths(tmp_path):
    cfg = cfg_for(tmp_path, "cifar100", tmp_path / "mirror")
    with pytest.raises(DataError) as e:
        build_data(cfg, CPU)
    msg = str(e.value)
    for root in (tmp_path / "mirror", tmp_path / "root"):
        assert f"{root}/cifar-100-python/" in msg and f"{root}/{{cifar100-jpeg," in msg
    assert "'cifar100'" in msg and "offline: false" in msg


def test_failed_download_is_data_error(tmp_path, monkeypatch):
    class NoNetwork:
        def __init__(self, root, train, download):
            assert download and root == str(tmp_path / "root")
            raise OSError("network unreachable")

    monkeypatch.setitem(sources._TORCHVISION, "cifar10", (*sources._TORCHVISION["cifar10"][:1], NoNetwork,
                                                          *sources._TORCHVISION["cifar10"][2:]))
    with pytest.raises(DataError, match="(?s)failed: OSError: network unreachable.*To fix"):
        build_data(cfg_for(tmp_path, "cifar10", offline=False), CPU)


def test_val_size_too_large(tmp_path):
    write_mnist(tmp_path / "mirror")
    with pytest.raises(DataError, match="val_size=60"):
        build_data(cfg_for(tmp_path, "mnist", tmp_path / "mirror", val_size=60), CPU)


# ----------------------------------------------------------------------------- splits
def test_split_seeded_and_disjoint():
    labels = torch.arange(1000) % 10
    cfg = {"seed": 3, "subset_per_class": None, "test_subset_per_class": None, "val_size": 100}
    tr, va, te = split_indices(labels, labels[:200], cfg, "x")
    assert (len(tr), len(va), len(te)) == (900, 100, 200)
    assert len(set(tr.tolist()) | set(va.tolist())) == 1000
    again = split_indices(labels, labels[:200], cfg, "x")
    assert torch.equal(tr, again[0]) and torch.equal(va, again[1])
    other = split_indices(labels, labels[:200], {**cfg, "seed": 4}, "x")
    assert not torch.equal(va, other[1])


def test_subset_before_val_split():
    labels = torch.arange(1000) % 10
    cfg = {"seed": 0, "subset_per_class": 7, "test_subset_per_class": 3, "val_size": 20}
    tr, va, te = split_indices(labels, labels[:500], cfg, "x")
    assert torch.equal(torch.bincount(labels[torch.cat([tr, va])]), torch.full((10,), 7))
    assert (len(tr), len(va)) == (50, 20)
    assert torch.equal(torch.bincount(labels[te]), torch.full((10,), 3))
    sub = per_class_subset(labels, 7, seed=1)
    assert torch.equal(sub, per_class_subset(labels, 7, seed=1)) and not torch.equal(sub, per_class_subset(labels, 7, seed=2))


# ----------------------------------------------------------------------------- epochs, augmentation, sharding
def small_loader(n: int = 50, world_size: int = 1, rank: int = 0, **kw) -> DeviceLoader:
    """A CIFAR-shaped loader whose labels are the sample indices (to see what it yields)."""
    args = dict(info=DATASETS["cifar10"], device=CPU, batch_size=8, shuffle=True, crop_padding=4, hflip=True,
                seed=5, rank=rank, world_size=world_size)
    args.update(kw)
    return DeviceLoader(torch.from_numpy(images(n, 3, 32, 7)), torch.arange(n), **args)


def test_epoch_reproducible_and_resumable():
    a, b = small_loader(), small_loader()
    for e in range(3):
        a.set_epoch(e)
        epoch_a = collect(a)
    b.set_epoch(2)  # a "resumed" loader that never saw epochs 0 and 1
    epoch_b = collect(b)
    assert torch.equal(epoch_a[0], epoch_b[0]) and torch.equal(epoch_a[1], epoch_b[1])
    b.set_epoch(3)
    assert not torch.equal(collect(b)[1], epoch_b[1])
    assert sorted(epoch_b[1].tolist()) == list(range(50))  # a permutation; last partial batch kept
    assert len(a) == 7 and [len(y) for _, y in a][-1] == 2


def test_augmentation_is_crop_and_flip():
    plain, aug = small_loader(crop_padding=0, hflip=False), small_loader()
    xp, yp = collect(plain)
    xa, ya = collect(aug)
    assert torch.equal(yp, ya)  # the permutation does not depend on augmentation settings
    assert xa.shape == xp.shape and not torch.equal(xa, xp)
    src = F_pad(unnormalise(xp, "cifar10"), 4)
    got = unnormalise(xa, "cifar10")
    flips = 0
    for i in range(len(ya)):  # each output is one of the 81 crops x 2 flips of its padded source
        matches = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (0, 1)
                   if torch.equal(got[i], (lambda c: c.flip(-1) if f else c)(src[i, :, dy:dy + 32, dx:dx + 32]))]
        assert matches, f"sample {i} is not a crop/flip of its source"
        flips += all(f for _, _, f in matches)
    assert 0 < flips < len(ya)


def F_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (p, p, p, p))


def test_eval_loaders_fixed_and_unaugmented(tmp_path):
    data = write_cifar10(tmp_path / "mirror")
    cfg = cfg_for(tmp_path, "cifar10", tmp_path / "mirror", val_size=20, augment_crop_padding=8)
    b = build_data(cfg, CPU)
    xv1, yv1 = collect(b.val)
    b.val.set_epoch(7)
    xv2, yv2 = collect(b.val)
    assert torch.equal(xv1, xv2) and torch.equal(yv1, yv2)
    _, val_idx, _ = split_indices(torch.from_numpy(data["train_y"]), torch.zeros(20), {**cfg}, "cifar10")
    assert torch.equal(unnormalise(xv1, "cifar10"), torch.from_numpy(data["train_x"])[val_idx])
    assert b.train.pad == 8 and b.val.pad == 0 and not b.val.hflip


def test_ddp_shards_disjoint_and_cover_the_permutation():
    n, w = 53, 3
    loaders = [small_loader(n, world_size=w, rank=r) for r in range(w)]
    single = small_loader(n, batch_size=24)
    for ld in loaders + [single]:
        ld.set_epoch(4)
    shards = [collect(ld) for ld in loaders]
    seen = torch.cat([y for _, y in shards])
    assert len(seen) == n // w * w and len(set(seen.tolist())) == len(seen)  # disjoint, equal sizes
    assert all(ld.num_samples == 17 and len(ld) == 3 for ld in loaders)
    _, perm = epoch_shard(n, 5, 4, 0, 1)
    assert set(seen.tolist()) == set(perm[: n // w * w].tolist())
    # The ranks' k-th batches together are the single-process k-th batch, with the same augmentation.
    batches = [list(ld) for ld in loaders]
    for k, (x1, y1) in enumerate(single):
        if k == len(batches[0]):
            break
        xs, ys = zip(*(batches[r][k] for r in range(w)))
        y_all, x_all = torch.cat(ys), torch.cat(xs)
        order = torch.argsort(y_all)
        ref = torch.argsort(y1[: len(y_all)])
        assert torch.equal(y_all[order], y1[ref]) and torch.equal(x_all[order], x1[ref])


def test_ddp_batch_split(tmp_path):
    write_mnist(tmp_path / "mirror")
    cfg = cfg_for(tmp_path, "mnist", tmp_path / "mirror", batch_size=16)
    b = build_data(cfg, CPU, rank=1, world_size=4)
    assert b.train.batch_size == 4 and b.train.num_samples == 50 // 4
    assert b.val.num_samples == 10  # evaluation is not sharded
    with pytest.raises(DataError, match="divisible"):
        build_data(cfg, CPU, rank=0, world_size=3)


def test_channels_last_only_when_asked():
    x, _ = next(iter(small_loader(channels_last=True)))
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    x, _ = next(iter(small_loader(channels_last=False)))
    assert x.is_contiguous()


def test_image_size_override_resizes(tmp_path):
    write_mnist(tmp_path / "mirror")
    b = build_data(cfg_for(tmp_path, "mnist", tmp_path / "mirror", image_size=32), CPU)
    assert b.info.image_size == 32 and next(iter(b.train))[0].shape == (16, 1, 32, 32)


# ----------------------------------------------------------------------------- ImageNet
def write_imagenet(root: Path, classes: int = 1000, dirname: str = "imagenet") -> None:
    jpeg = encode_jpeg(torch.from_numpy(images(1, 3, 12, 9)[0][:, :, :10].copy())).numpy().tobytes()
    for split in ("train", "val"):
        for c in range(classes):
            d = root / dirname / split / f"n{c:08d}"
            d.mkdir(parents=True)
            (d / f"n{c:08d}_0.JPEG").write_bytes(jpeg)


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet")
    write_imagenet(root)
    return root


def test_imagenet_tree(tmp_path, imagenet_root):
    cfg = cfg_for(tmp_path, "imagenet", imagenet_root, image_size=8, val_size=100, batch_size=300,
                  eval_batch_size=500, test_subset_per_class=None)
    b = build_data(cfg, CPU)
    assert (b.train.num_samples, b.val.num_samples, b.test.num_samples) == (900, 100, 1000)
    assert (len(b.train), len(b.val), len(b.test)) == (3, 1, 2)
    b.train.set_epoch(1)
    xa, ya = collect(b.train)
    assert xa.shape == (900, 3, 8, 8) and xa.dtype == torch.float32 and ya.dtype == torch.int64
    b.train.set_epoch(1)
    xb, yb = collect(b.train)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)  # augmentation from (seed, epoch) only
    b.train.set_epoch(2)
    assert not torch.equal(collect(b.train)[1], ya)
    xt, yt = collect(b.test)
    assert torch.equal(yt, torch.arange(1000)) and torch.equal(xt[0], xt[1])  # val/: fixed, unaugmented


def test_imagenet_workers_give_same_batches(tmp_path, imagenet_root):
    kw = dict(image_size=8, val_size=100, batch_size=128, subset_per_class=None)
    one = build_data(cfg_for(tmp_path, "imagenet", imagenet_root, num_workers=0, **kw), CPU).train
    two = build_data(cfg_for(tmp_path, "imagenet", imagenet_root, num_workers=2, **kw), CPU).train
    for ld in (one, two):
        ld.set_epoch(3)
    x1, y1 = next(iter(one))
    x2, y2 = next(iter(two))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_imagenet_refuses_wrong_class_count(tmp_path):
    write_imagenet(tmp_path / "mirror", classes=12)
    with pytest.raises(DataError, match="12 class folders, expected exactly 1000"):
        build_data(cfg_for(tmp_path, "imagenet", tmp_path / "mirror"), CPU)


def test_imagenet_missing(tmp_path):
    with pytest.raises(DataError, match="(?s)imagenet-sample.tar.gz.*never downloaded|never downloaded.*imagenet-sample"):
        build_data(cfg_for(tmp_path, "imagenet", tmp_path / "mirror", offline=False), CPU)


# ----------------------------------------------------------------------------- real offline copies
def real_cfg(tmp_path: Path, name: str) -> dict:
    return cfg_for(tmp_path, name, SHARED, val_size=5000)


@pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="no offline MNIST copy")
def test_real_mnist(tmp_path):
    a = sources.load_arrays(DATASETS["mnist"], real_cfg(tmp_path, "mnist"))
    assert a.train_x.shape == (60000, 1, 28, 28) and a.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(a.train_y).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(a.test_y).tolist() == MNIST_TEST_COUNTS


@pytest.mark.skipif(not (SHARED / "FashionMNIST" / "raw").is_dir(), reason="no offline Fashion-MNIST copy")
def test_real_fashionmnist(tmp_path):
    b = build_data(real_cfg(tmp_path, "fashionmnist"), CPU)
    assert (b.train.num_samples, b.val.num_samples, b.test.num_samples) == (55000, 5000, 10000)


@pytest.mark.skipif(not (SHARED / "imagenet-sample.tar.gz").is_file(), reason="no offline ImageNet sample")
def test_real_imagenet_sample(tmp_path):
    b = build_data(cfg_for(tmp_path, "imagenet", SHARED, val_size=100, batch_size=32), CPU)
    assert (b.train.num_samples, b.val.num_samples, b.test.num_samples) == (900, 100, 1000)
    x, y = next(iter(b.test))
    assert x.shape == (7, 3, 64, 64) and y.tolist() == list(range(7))


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "cifar10-jpeg.tar.gz").is_file(), reason="no offline CIFAR-10 copy")
def test_real_cifar10_jpeg(tmp_path):
    a = sources.load_arrays(DATASETS["cifar10"], real_cfg(tmp_path, "cifar10"))
    assert a.train_x.shape == (50000, 3, 32, 32) and a.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(a.train_y).tolist() == [5000] * 10 and torch.bincount(a.test_y).tolist() == [1000] * 10
