"""The command line of the MLflow store (`python -m asge.tracking ...`).

`python -m asge.tracking init --experiment main --experiment ablations [--flag FILE]` creates
the store and experiments once, before parallel writers start (the workflow's first job).
`python -m asge.tracking relocate --uri sqlite:///COPY/mlflow.db` points a copied or moved
store at the mlartifacts/ beside it (MLflow keeps absolute artifact URIs).
`python -m asge.tracking import results/reference/runs [--experiment-prefix reference-]
[--tracking-uri sqlite:///mlflow.db]` loads finished run folders without retraining (idempotent).
`python -m asge.tracking links [--base http://127.0.0.1:5000]` prints each experiment's runs-table
URL for `mlflow ui`.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from asge.tracking.store import default_tracking_uri, init_store


def main(argv: list[str] | None = None) -> int:
    """`init`: create the store and experiments; `relocate`: repoint a copied store's artifacts;
    `import`: load finished run folders into the store; `links`: the runs-table URLs."""
    ap = argparse.ArgumentParser(
        prog="python -m asge.tracking",
        description="The MLflow store: create it, repoint a copy, import run folders, link its runs tables.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init", help="create the store and the experiments")
    p.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db)")
    p.add_argument("--experiment", action="append", default=[], help="experiment to create (repeatable)")
    p.add_argument("--flag", default=None, help="write this file (JSON: uri and experiment ids) when done")
    r = sub.add_parser("relocate", help="point a copied or moved SQLite store at the mlartifacts/ beside it")
    r.add_argument("--uri", default=None, help="the store (default: $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db)")
    r.add_argument("--artifacts", default=None, help="artifact folder (default: mlartifacts/ beside the database)")
    i = sub.add_parser("import", help="load finished run folders (<runs>/<study>/<run>/) into the store")
    i.add_argument("runs", type=Path, help="the runs folder, e.g. results/reference/runs")
    i.add_argument("--experiment-prefix", default=None,
                   help="experiment = <prefix><study> (default: the prefix of the preset whose results hold RUNS, else '')")
    i.add_argument("--tracking-uri", "--uri", dest="uri", default=None,
                   help="the store (default: $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db)")
    k = sub.add_parser("links", help="print each experiment's runs-table URL for `mlflow ui`")
    k.add_argument("--uri", default=None, help="the store (default: $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db)")
    k.add_argument("--base", default="http://127.0.0.1:5000", help="where `mlflow ui` listens")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    uri = args.uri or default_tracking_uri()
    if args.cmd == "import":
        from asge.tracking.importer import import_runs

        summary = import_runs(args.runs, args.experiment_prefix, uri, say=lambda line: print(line, file=sys.stderr))
        print(f"{summary.line()} ({args.runs} -> {uri})")
        return 1 if summary.failed else 0
    if args.cmd == "links":
        from asge.tracking.store import runs_table_links

        links = runs_table_links(uri, args.base)
        if not links:
            print(f"no experiments in {uri}: train something first (make smoke)", file=sys.stderr)
            return 1
        width = max(len(name) for name, _ in links)
        for name, url in links:
            print(f"{name:<{width}}  {url}")
        return 0
    if args.cmd == "relocate":
        from asge.tracking.store import relocate

        n = relocate(uri, Path(args.artifacts) if args.artifacts else None)
        print(f"mlflow store {uri}: {n} artifact locations rewritten", file=sys.stderr)
        return 0
    ids = init_store(uri, args.experiment)
    print(f"mlflow store {uri}: experiments {ids}", file=sys.stderr)
    if args.flag:
        flag = Path(args.flag)
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.write_text(json.dumps({"tracking_uri": uri, "experiments": ids}, indent=2) + "\n")
    return 0

