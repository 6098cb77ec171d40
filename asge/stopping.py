"""A run stopped from outside: SIGTERM (SLURM's time limit, `kill`, `scancel`) as an exception.

Kept apart from asge.runtime, which imports torch: the tracking modules need `Terminated` too,
and `python -m asge.tracking` starts without torch.
"""
from __future__ import annotations

import signal
from typing import Any


class Terminated(BaseException):
    """SIGTERM arrived (SLURM's time limit, `kill`, `scancel`): a BaseException like Ctrl-C, so that
    the run stops through the same path as any failure and its tracking marks it KILLED."""


def raise_on_sigterm() -> None:
    """Turn SIGTERM into `Terminated` in the main thread. The checkpoint is written atomically, so
    stopping anywhere keeps the last finished epoch's checkpoint, which a rerun resumes from."""
    def stop(signum: int, frame: Any) -> None:
        raise Terminated(f"stopped by {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, stop)
