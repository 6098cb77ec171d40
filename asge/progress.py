"""Progress of one training epoch: a bar on a terminal, a periodic log line otherwise.

Long CPU epochs (a minute or more) would otherwise print nothing until they end. The engine
calls `update(step, images)` after every optimiser step with host-side counts only (no GPU
synchronisation: the numbers are the batches queued, which a CUDA stream runs shortly after),
and `close()` at the end of the epoch.

- attached to a terminal (stderr is a TTY): one line redrawn in place at most ~5 times a
  second, `epoch 3/20 [#######.....] 120/300 batches  812 img/s  ETA 0:13`;
- otherwise (Snakemake logs, SLURM): a log line every `interval_s` seconds (default 30),
  `epoch 3/20: 120/300 batches (40%), 812 img/s, ETA 0:13 for this epoch`, so a log shows
  that a long job is alive and when its epoch ends; epochs shorter than the interval stay
  silent (the engine's per-epoch line follows anyway).
"""
from __future__ import annotations

import logging
import sys
import time
from typing import IO

log = logging.getLogger("asge")


def fmt_duration(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class EpochProgress:
    """Progress of one epoch of `total` batches (see the module docstring)."""

    def __init__(self, epoch: int, epochs: int, total: int, *, enabled: bool = True, stream: IO[str] | None = None,
                 interval_s: float = 30.0, tty: bool | None = None, clock=time.perf_counter) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = (self.stream.isatty() if hasattr(self.stream, "isatty") else False) if tty is None else tty
        self.enabled = enabled and total > 0
        self.label = f"epoch {epoch + 1}/{epochs}"
        self.total = total
        self.clock = clock
        self.t0 = clock()
        self.interval = 0.2 if self.tty else interval_s
        self.next_t = self.t0 + self.interval
        self.step = self.images = 0
        self.drawn = False

    def text(self, now: float) -> str:
        dt = max(now - self.t0, 1e-9)
        rate = self.images / dt
        eta = dt / self.step * (self.total - self.step) if self.step else float("nan")
        eta_s = fmt_duration(eta) if eta == eta else "?"
        if self.tty:
            width = 24
            done = int(width * self.step / self.total)
            return (f"{self.label} [{'#' * done}{'.' * (width - done)}] {self.step}/{self.total} batches  "
                    f"{rate:.0f} img/s  ETA {eta_s}")
        return (f"{self.label}: {self.step}/{self.total} batches ({100 * self.step / self.total:.0f}%), "
                f"{rate:.0f} img/s, ETA {eta_s} for this epoch")

    def update(self, step: int, images: int) -> None:
        """After batch `step` (1-based), with `images` seen so far in this epoch."""
        self.step, self.images = step, images
        if not self.enabled:
            return
        now = self.clock()
        if now < self.next_t and step < self.total:
            return
        self.next_t = now + self.interval
        if self.tty:
            self.stream.write("\r" + self.text(now) + "\033[K")
            self.stream.flush()
            self.drawn = True
        elif step < self.total:  # the engine logs the finished epoch itself
            log.info("%s", self.text(now))

    def close(self) -> None:
        """End the bar's line so that the next log line starts on a fresh one."""
        if self.enabled and self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
