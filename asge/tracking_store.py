"""Parts of MLflow tracking that concern the store rather than one run's metrics:

- `dataset_input(cfg, metrics)`: the data set a run trained on as an MLflow dataset input
  (name, source path, digest, split sizes), shown in the UI's "Datasets used" column and on
  the run page;
- `relocate(uri)`: make a copied or moved SQLite store point at the artifacts beside it.
  MLflow stores artifact locations as absolute `file://` URIs (it resolves relative ones when
  an experiment is created), so `mlflow.db` + `mlartifacts/` copied to another folder or
  machine still point at the original folder until relocated:

      python -m asge.tracking relocate --uri sqlite:///path/to/copy/mlflow.db
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any, Mapping

ARTIFACTS = "mlartifacts"
#: bytes read from the head of each data file for the digest (whole files can be gigabytes)
HEAD_BYTES = 1 << 20
#: cfg keys that decide which images of the source a run sees
SPLIT_KEYS = ("subset_per_class", "test_subset_per_class", "val_size", "seed", "image_size")


# --- dataset input ---------------------------------------------------------------------------
def locate_source(cfg: Mapping[str, Any]) -> tuple[str, list[Path]]:
    """(where the data set was read from, its files) by the data layer's own search order; the
    first root that holds it wins, as in asge.data.sources.load_arrays."""
    from asge.data.sources import _TORCHVISION, folder_names, search_roots

    name = cfg["dataset"]
    roots = search_roots({"data_root": "data", **cfg})
    for root in roots:
        if name in _TORCHVISION:
            sub, files = _TORCHVISION[name][2], _TORCHVISION[name][3]
            paths = [root / sub / f for f in files]
            if all(p.is_file() for p in paths):
                return str(root / sub), paths
        for fn in folder_names(name):
            if (root / fn).is_dir():
                return str(root / fn), []
            for ext in (".tar", ".tar.gz", ".tgz"):
                if (root / f"{fn}{ext}").is_file():
                    return str(root / f"{fn}{ext}"), [root / f"{fn}{ext}"]
    return f"not found under {', '.join(map(str, roots))}", []


def _file_fingerprint(path: Path) -> str:
    h = hashlib.sha256(path.name.encode())
    h.update(str(path.stat().st_size).encode())
    with path.open("rb") as f:
        h.update(f.read(HEAD_BYTES))
    return h.hexdigest()


def dataset_input(cfg: Mapping[str, Any], metrics: Mapping[str, Any]):
    """An MLflow DatasetInput for the run's training data. The digest covers the source files
    (name, size, first MiB) and the split settings, so two runs with the same digest saw the
    same images."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source, files = locate_source(cfg)
    splits = dict(metrics.get("data_splits") or {})
    split_cfg = {k: cfg.get(k) for k in SPLIT_KEYS}
    h = hashlib.sha256(json.dumps({"dataset": cfg["dataset"], "split": split_cfg, "sizes": splits},
                                  sort_keys=True, default=str).encode())
    for p in files:
        h.update(_file_fingerprint(p).encode())
    name = str(cfg["dataset"])
    if cfg.get("subset_per_class") or cfg.get("test_subset_per_class"):
        name += "-subset"
    profile = {"splits": splits, **{k: v for k, v in split_cfg.items() if v is not None}}
    ds = Dataset(name=name, digest=h.hexdigest()[:12], source_type="local", source=json.dumps({"uri": source}),
                 profile=json.dumps(profile, sort_keys=True))
    return DatasetInput(dataset=ds, tags=[InputTag("mlflow.data.context", "training")])


# --- moving a store ------------------------------------------------------------------------
def _artifact_columns(con: sqlite3.Connection) -> list[tuple[str, str]]:
    """(table, column) of every artifact location MLflow keeps in this schema version."""
    out = []
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for col in con.execute(f'PRAGMA table_info("{table}")'):
            if col[1] in ("artifact_location", "artifact_uri"):
                out.append((table, col[1]))
    return out


def relocate(uri: str, artifacts: Path | None = None) -> int:
    """Point every artifact location of the SQLite store at `artifacts` (default: the
    mlartifacts/ folder beside the database file): whatever precedes `/mlartifacts/` in a
    stored `file://` URI is replaced. Returns the number of rows changed."""
    from asge.tracking import sqlite_path

    db = sqlite_path(uri)
    if db is None or not db.is_file():
        raise ValueError(f"relocate needs an existing SQLite store (sqlite:///FILE); got {uri!r}")
    new = (artifacts or db.parent / ARTIFACTS).resolve().as_uri()
    marker = f"/{ARTIFACTS}/"
    changed = 0
    with sqlite3.connect(db) as con:
        for table, col in _artifact_columns(con):
            rows = con.execute(f'SELECT rowid, "{col}" FROM "{table}" WHERE "{col}" LIKE ?', (f"%{marker}%",)).fetchall()
            for rowid, old in rows:
                if not old.startswith("file:"):
                    continue  # a server's mlflow-artifacts:/ or a cloud URI: nothing local to move
                updated = new + old[old.index(marker) + len(marker) - 1:]
                if updated != old:
                    con.execute(f'UPDATE "{table}" SET "{col}" = ? WHERE rowid = ?', (updated, rowid))
                    changed += 1
    return changed
