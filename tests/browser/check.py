"""Browser check of what users see: the Snakemake report and the MLflow UI, in headless Chromium.

    python tests/browser/check.py --preset smoke        # or: make browser-check PRESET=smoke

Not part of the default test run (it needs a browser and a finished workflow). It

1. finds Chromium, or installs Debian's `chromium` with apt-get (as root) when it is missing;
2. builds the preset's report (`snakemake --report`) unless --report names one, unpacks it,
   loads its landing page and every table in it, and fails if a table has no data row or the
   landing page lacks the report categories;
3. starts `mlflow ui` on 127.0.0.1 (a free port, telemetry off) on the store, opens the runs
   table of `<prefix>main` at the URL that the README's `python -m asge.tracking links` prints
   (fresh profile: nothing stored in the browser), then the compare view of an ASGE and a BP run,
   and fails if the runs table or the compare view does not list the runs;
4. saves a screenshot of each page under --out (default results/<preset>/browser/) and, with
   --docs-shot FILE, copies the compare view there.

Every Chromium call is a fresh, isolated, headless process: --no-sandbox --disable-gpu
--disable-quic --no-first-run --disable-background-networking --disable-component-update
--disable-sync and a new --user-data-dir; the only server is mlflow on the loopback interface.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from asge.tracking_store import runs_table_links

REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]
CATEGORIES = ("Tables", "Paper figures", "Accuracy", "Cost")


class CheckFailed(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[browser-check] {msg}", flush=True)


def chromium() -> str:
    """The Chromium binary; installs Debian's package when none is found and we are root."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0:
        raise CheckFailed("no Chromium found; install it (Debian: `sudo apt-get install chromium`) and rerun")
    log("installing chromium with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    return shutil.which("chromium") or "/usr/bin/chromium"


def browse(browser: str, url: str, shot: Path | None = None, wait_ms: int = 15000, size: str = "1600,1000") -> str:
    """The page's DOM after `wait_ms` of virtual time (scripts run, fetches answered); with
    `shot`, also a screenshot of the same page state."""
    dom = ""
    for mode in (["--dump-dom"], [f"--screenshot={shot}"] if shot else None):
        if mode is None:
            continue
        with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            cmd = [browser, *FLAGS, f"--window-size={size}", f"--user-data-dir={profile}",
                   f"--virtual-time-budget={wait_ms}", *mode, url]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if p.returncode != 0:
            raise CheckFailed(f"chromium failed on {url}: {p.stderr[-2000:]}")
        if mode == ["--dump-dom"]:
            dom = p.stdout
    if shot is not None and not (shot.is_file() and shot.stat().st_size > 5000):
        raise CheckFailed(f"no screenshot of {url} at {shot}")
    return dom


def data_rows(dom: str) -> int:
    """Table rows with data cells in a DOM."""
    return len(re.findall(r"<tr[^>]*>\s*<td", dom))


# --- the report --------------------------------------------------------------------------------
def check_report(browser: str, report_zip: Path, out: Path) -> None:
    unpacked = out / "report"
    shutil.rmtree(unpacked, ignore_errors=True)
    zipfile.ZipFile(report_zip).extractall(unpacked)
    pages = list(unpacked.rglob("report.html"))
    if not pages:
        raise CheckFailed(f"{report_zip} holds no report.html")
    dom = browse(browser, pages[0].as_uri(), out / "report_landing.png")
    missing = [c for c in CATEGORIES if c not in dom]
    if missing:
        raise CheckFailed(f"report landing page lacks the categories {missing}")
    tables = sorted(unpacked.rglob("data/raw/*/*.html"))
    if not tables:
        raise CheckFailed("the report holds no HTML table")
    for t in tables:
        shot = out / f"report_{t.stem}.png" if t.stem in ("T1_main", "T2_strategies") else None
        n = data_rows(browse(browser, t.as_uri(), shot, wait_ms=2000))
        if n == 0:
            raise CheckFailed(f"report table {t.stem} is empty")
        log(f"report table {t.stem}: {n} rows")


# --- MLflow ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def start_mlflow(store: str, port: int, logfile: Path) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow), "ui", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri", store]
    proc = subprocess.Popen(cmd, env=env, stdout=logfile.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise CheckFailed(f"mlflow ui exited ({proc.returncode}); see {logfile}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(1)
    raise CheckFailed(f"mlflow ui did not answer on 127.0.0.1:{port} within 180 s; see {logfile}")


def check_mlflow(browser: str, store: str, experiment: str, pair: tuple[str, str], out: Path,
                 docs_shot: Path | None) -> None:
    port = free_port()
    proc = start_mlflow(store, port, out / "mlflow_ui.log")
    base = f"http://127.0.0.1:{port}"
    try:
        found = api(base, "experiments/search", {"max_results": 1000})["experiments"]
        exp = next((e for e in found if e["name"] == experiment), None)
        if exp is None:
            raise CheckFailed(f"experiment {experiment!r} is not in {store}")
        runs = api(base, "runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 1000,
                                         "filter": "tags.asge.superseded IS NULL"})["runs"]
        by_name = {r["info"]["run_name"]: r["info"]["run_id"] for r in runs}
        if not by_name:
            raise CheckFailed(f"experiment {experiment!r} has no current run")
        # the README's step: the URL that `python -m asge.tracking links` prints for the experiment
        table_url = dict(runs_table_links(store, base))[experiment]
        dom = browse(browser, table_url, out / "mlflow_runs.png", wait_ms=25000)
        listed = [n for n in by_name if n in dom]
        if not listed:
            raise CheckFailed(f"the MLflow runs table of {experiment!r} lists none of its {len(by_name)} runs")
        log(f"mlflow runs table: {len(listed)} of {len(by_name)} runs listed")
        ids = [by_name.get(n) for n in pair]
        if None in ids:
            raise CheckFailed(f"runs {pair} are not both in {experiment!r} ({sorted(by_name)})")
        q = urllib.parse.quote(json.dumps(ids, separators=(",", ":")))
        e = urllib.parse.quote(json.dumps([exp["experiment_id"]], separators=(",", ":")))
        compare_url = f"{base}/#/compare-runs?runs={q}&experiments={e}&workflowType=machine_learning"
        # tall: the parameter and metric tables below the plot are part of the view
        dom = browse(browser, compare_url, out / "mlflow_compare.png", wait_ms=25000, size="1600,2200")
        if not all(n in dom for n in pair):
            raise CheckFailed(f"the MLflow compare view does not show both {pair}")
        log(f"mlflow compare view shows {pair[0]} and {pair[1]}")
        if docs_shot is not None:
            docs_shot.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(out / "mlflow_compare.png", docs_shot)
            log(f"compare view copied to {docs_shot}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--repo", type=Path, default=REPO, help="workflow folder (default: this repository)")
    ap.add_argument("--store", default=None, help="tracking URI (default: sqlite:///<repo>/mlflow.db)")
    ap.add_argument("--report", type=Path, default=None, help="a report zip (default: build one)")
    ap.add_argument("--out", type=Path, default=None, help="screenshots (default: <repo>/results/<preset>/browser)")
    ap.add_argument("--compare", default=None, help="two run names, comma-separated (default: asge/bp on the "
                                                    "first data set of the runs table)")
    ap.add_argument("--docs-shot", type=Path, default=None, help="copy the compare view's screenshot here")
    ap.add_argument("--snakemake-args", default="", help="extra arguments for `snakemake --report`")
    args = ap.parse_args(argv)
    repo = args.repo.resolve()
    out = (args.out or repo / "results" / args.preset / "browser").resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        browser = chromium()
        report = args.report
        if report is None:
            report = out / "report.zip"
            snakemake = Path(sys.executable).with_name("snakemake")
            cmd = [str(snakemake), "--cores", "1", "--report", str(report), "--config", f"preset={args.preset}",
                   *args.snakemake_args.split()]
            p = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                raise CheckFailed(f"snakemake --report failed: {p.stderr[-3000:]}")
        check_report(browser, report.resolve(), out)
        prefix = "" if args.preset == "paper" else f"{args.preset}-"
        if args.compare:
            pair = tuple(args.compare.split(","))
        else:
            runs_csv = repo / "results" / ("" if args.preset == "paper" else args.preset) / "tables" / "runs.csv"
            import pandas as pd

            main_runs = pd.read_csv(runs_csv).query("study == 'main'")
            d = main_runs["dataset"].iloc[0]
            pair = (f"asge-{d}-s{main_runs['seed'].min()}", f"bp-{d}-s{main_runs['seed'].min()}")
        store = args.store or f"sqlite:///{repo / 'mlflow.db'}"
        check_mlflow(browser, store, f"{prefix}main", pair, out, args.docs_shot)
    except CheckFailed as e:
        log(f"FAILED: {e}")
        return 1
    log(f"passed; screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
