"""The MLflow store: where it lives, a client that survives SQLite lock contention, the
experiments, the data set as a dataset input, and moving a copied store.

- `default_tracking_uri()`: $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db (so a plain
  `mlflow ui --host 127.0.0.1` in the repo root finds it); artifacts of a SQLite store live in
  mlartifacts/ beside the database file;
- `retry(fn, ...)`: every store call retries with exponential back-off on transient errors
  (SQLite's "database is locked"); the last error propagates;
- `make_client(uri)`, `get_or_create_experiment`, `init_store`: the store and experiments,
  created once before parallel writers start (a new SQLite file is created under a file lock);
- `dataset_input(cfg, metrics)`: the data set a run trained on as an MLflow dataset input
  (name, source path, digest, split sizes), shown in the UI's "Datasets used" column;
- `relocate(uri)`: make a copied or moved SQLite store point at the artifacts beside it.
  MLflow stores artifact locations as absolute `file://` URIs, so `mlflow.db` + `mlartifacts/`
  copied elsewhere still point at the original folder until relocated:

      python -m asge.tracking relocate --uri sqlite:///path/to/copy/mlflow.db

MLflow's telemetry is switched off here, before mlflow is imported: nothing reaches the internet.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

# Before mlflow is imported anywhere in this process: no telemetry, no network.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

log = logging.getLogger("asge.tracking")

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = "mlartifacts"
#: bytes read from the head of each data file for the digest (whole files can be gigabytes)
HEAD_BYTES = 1 << 20
#: cfg keys that decide which images of the source a run sees
SPLIT_KEYS = ("subset_per_class", "test_subset_per_class", "val_size", "seed", "image_size")

T = TypeVar("T")


# --- where the store lives -------------------------------------------------------------------
def default_tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI if set, else the SQLite store at the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (relative paths against the cwd), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):]).resolve()


def artifact_location(uri: str, experiment: str) -> str | None:
    """mlartifacts/<experiment> beside a SQLite database; None (the store's default) otherwise."""
    db = sqlite_path(uri)
    if db is None:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
    return (db.parent / ARTIFACTS / safe).as_uri()


# --- retries ---------------------------------------------------------------------------------
TRANSIENT = ("database is locked", "database table is locked", "busy", "unable to open database",
             "disk i/o error", "connection refused", "timed out", "temporarily unavailable")


def is_transient(e: BaseException) -> bool:
    """A store error worth retrying: SQLite lock contention or a flaky connection."""
    text = f"{type(e).__name__}: {e}".lower()
    return any(t in text for t in TRANSIENT) or type(e).__name__ == "OperationalError"


def retry(fn: Callable[..., T], *args: Any, attempts: int = 8, base_delay: float = 0.1, max_delay: float = 8.0,
          what: str = "", **kwargs: Any) -> T:
    """Call fn; on a transient error wait base_delay * 2**k (with jitter, capped) and try again.

    Non-transient errors and the last transient one propagate."""
    for k in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - classified below
            if k == attempts - 1 or not is_transient(e):
                raise
            delay = min(max_delay, base_delay * 2 ** k) * (0.5 + random.random())
            log.warning("mlflow %s failed (%s: %s); retry %d/%d in %.2fs", what or getattr(fn, "__name__", "call"),
                        type(e).__name__, str(e).splitlines()[0][:200], k + 1, attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


# --- client and experiments ------------------------------------------------------------------
@contextlib.contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    """An exclusive lock beside a SQLite file while the store is created (no-op elsewhere)."""
    if path is None:
        yield
        return
    import fcntl

    lock = path.parent / ARTIFACTS / f".{path.name}.lock"  # mlartifacts/ is git-ignored
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def make_client(uri: str) -> Any:
    """An MlflowClient for `uri`; creating a new SQLite store is serialised by a file lock
    (parallel first writers to a fresh file otherwise crash in the schema migration)."""
    from mlflow.tracking import MlflowClient

    if sqlite_path(uri) is not None:
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - slow import, outside the lock

    def build() -> Any:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # forces the store (and its tables) into being
        return client

    with _file_lock(sqlite_path(uri)):
        return retry(build, what="connect")


def get_or_create_experiment(client: Any, name: str, uri: str) -> str:
    """Id of experiment `name`, created (with artifacts beside a SQLite store) if missing."""
    from mlflow.exceptions import MlflowException

    def once() -> str:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifact_location(uri, name))
        except MlflowException as e:  # another process created it just now
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise e
            return exp.experiment_id

    return retry(once, what=f"experiment {name!r}")


def runs_table_url(base: str, experiment_id: str) -> str:
    """The `mlflow ui` page of an experiment's runs table. MLflow 3 opens an experiment in its
    GenAI view unless the URL says `workflowType=machine_learning`; a click on an experiment in
    its list drops that parameter, so the README links here directly."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def runs_table_links(uri: str, base: str = "http://127.0.0.1:5000") -> list[tuple[str, str]]:
    """(experiment name, runs-table URL) of every active experiment of the store but MLflow's Default."""
    client = make_client(uri)
    found = retry(client.search_experiments, max_results=1000)
    return [(e.name, runs_table_url(base, e.experiment_id)) for e in sorted(found, key=lambda e: e.name)
            if e.name != "Default"]


def init_store(uri: str, experiments: list[str]) -> dict[str, str]:
    """Create the tracking store (tables of a new SQLite file) and the experiments."""
    client = make_client(uri)
    return {name: get_or_create_experiment(client, name, uri) for name in experiments}


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


def dataset_input(cfg: Mapping[str, Any], metrics: Mapping[str, Any]) -> Any:
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
