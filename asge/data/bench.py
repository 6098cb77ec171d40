"""Throughput of the training loader (with augmentation), in images per second.

    python -m asge.data.bench --dataset cifar10 --device cpu --threads 1
    python -m asge.data.bench --dataset cifar10 --device cuda --batch-size 256 --repeats 5

Builds the data as a run would (mirrors first, so CIFAR-10 comes from the JPEG tarball),
reports how long that took (the one-off decode on a cold cache, a cache load afterwards;
--fresh-cache forces the decode), then times --passes full epochs after one warm-up epoch,
--repeats times, and prints the median.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time

import torch

from asge.data import build_data


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epochs(loader, device: torch.device, passes: int, first_epoch: int) -> float:
    """Images per second over `passes` epochs (the batches are only touched, not used)."""
    _sync(device)
    start, n = time.perf_counter(), 0
    for e in range(passes):
        loader.set_epoch(first_epoch + e)
        for x, _ in loader:
            n += len(x)
    _sync(device)
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-root", default="data")
    p.add_argument("--data-mirrors", nargs="*", default=["../shared/data"])
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--fresh-cache", action="store_true", help="decode into a temporary cache (times the one-off decode)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--num-workers", type=int, default=8, help="DataLoader workers (ImageNet)")
    p.add_argument("--passes", type=int, default=1, help="epochs per timing")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = {
            "dataset": args.dataset, "data_root": args.data_root, "data_mirrors": args.data_mirrors,
            "cache_dir": tmp if args.fresh_cache else args.cache_dir, "batch_size": args.batch_size,
            "num_workers": args.num_workers, "offline": True, "val_size": 5000,
        }
        start = time.perf_counter()
        data = build_data(cfg, device)
        _sync(device)
        build_s = time.perf_counter() - start
    loader = data.train
    print(f"build_data: {build_s:.1f} s (find + decode/cache or cache load + split + copy to {device})")
    print(f"train loader: {loader.num_samples} images, {len(loader)} batches of {args.batch_size}, "
          f"threads={torch.get_num_threads()}")
    time_epochs(loader, device, 1, first_epoch=0)  # warm-up: allocator, kernels, workers
    rates = [time_epochs(loader, device, args.passes, first_epoch=1 + r * args.passes) for r in range(args.repeats)]
    print("images/s per repeat: " + ", ".join(f"{r:,.0f}" for r in rates))
    print(f"median: {statistics.median(rates):,.0f} images/s ({args.dataset}, {device}, batch {args.batch_size})")


if __name__ == "__main__":
    main()
