"""Atomic file writes: a crash never leaves a half-written file that looks finished."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp creates the file 0600; results are for colleagues too: the mode a plain open()
    # would give, i.e. 0666 less the process umask (0644 under the usual 022)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it; set it straight back
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def save_torch(path: str | Path, obj: Any) -> Path:
    import torch  # keeps this module light for the workflow's table and figure scripts

    return atomic_write(path, lambda p: torch.save(obj, p))


def write_csv(path: str | Path, df: Any) -> Path:
    """A pandas DataFrame as CSV, atomically."""
    return atomic_write(path, lambda p: df.to_csv(p, index=False))
