"""This process's place under torchrun, from its environment: the one place that reads RANK,
WORLD_SIZE and LOCAL_RANK. Torch-free, so that run-folder and tracking code can ask too."""
from __future__ import annotations

import os


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def is_rank_zero() -> bool:
    """Whether this process writes the run's files (the only process outside torchrun)."""
    return world()[0] == 0
