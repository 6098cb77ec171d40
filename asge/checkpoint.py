"""Complete training checkpoints (model, optimiser, scheduler, epoch, RNG states, config),
written atomically and loaded safely (weights_only) after checking they belong to this run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from asge.atomic import save_torch


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt or belongs to another configuration."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    save_torch(path, state)


def load_checkpoint(path: str | Path, config_hash: str) -> dict[str, Any]:
    """Load `path` (safe unpickler) and refuse it if it was written for another config."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, foreign object: all unusable
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a checkpoint of this suite ({type(e).__name__}: {e}); "
            f"delete it to start the run from scratch"
        ) from e
    if not isinstance(state, dict) or "config_hash" not in state:
        raise CheckpointError(f"checkpoint {path} lacks the suite's fields; delete it to start from scratch")
    if state["config_hash"] != config_hash:
        raise CheckpointError(
            f"checkpoint {path} was written for another configuration (hash {state['config_hash']}, this run "
            f"{config_hash}); use a new --out folder, or delete the checkpoint to start over"
        )
    return state
