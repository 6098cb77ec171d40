"""The data layer's seeded randomness: independent streams derived from the one configured seed,
and each epoch's sample order (the same on every DDP rank, so a resumed run sees the same batches)."""
from __future__ import annotations

import numpy as np
import torch

# Independent random streams derived from the one configured seed.
SPLIT, SUBSET, TEST_SUBSET, SHUFFLE, AUGMENT = range(1, 6)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers such as (seed, epoch, stream); distinct inputs -> unrelated seeds."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_shard(n: int, seed: int, epoch: int, rank: int, world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's part of the epoch's permutation of range(n): (positions, sample indices).

    The permutation is the same on every rank (CPU generator); rank r takes positions
    r, r + W, r + 2W, ... of its first n // W * W entries, so the ranks' k-th batches together
    are exactly the k-th global batch and every rank runs the same number of steps (the
    remainder, fewer than W samples, is left out of that epoch).
    """
    g = torch.Generator().manual_seed(derive_seed(seed, epoch, SHUFFLE))
    perm = torch.randperm(n, generator=g)
    positions = torch.arange(rank, n // world_size * world_size, world_size)
    return positions, perm[positions]
