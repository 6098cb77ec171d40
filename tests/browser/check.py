"""Browser check of what users see: the Snakemake report and the MLflow UI, in headless Chromium.

    python tests/browser/check.py --preset smoke        # or: make browser-check PRESET=smoke

Not part of the default test run (it needs a browser and a finished workflow). It

1. finds Chromium and chromedriver, or installs Debian's `chromium` and `chromium-driver` with
   apt-get (as root) when one is missing; Selenium drives it (the `browser` extra);
2. builds the preset's report (`snakemake --report`) unless --report names one, unpacks it,
   loads its landing page and every table in it, and fails if a table has no data row or the
   landing page lacks the report categories;
3. imports the preset's finished run folders into the store (idempotent, as the README says for
   committed results), starts `mlflow ui` on 127.0.0.1 (a free port, telemetry off) and follows
   the README's clicks from a fresh profile: its URL, "Model training" in the sidebar, the
   experiment `<prefix>main`, tick an ASGE and a BP run, Compare, then the metric `val_acc_last`;
   it fails where a click finds nothing or the chart does not draw both runs;
4. saves a screenshot of each page under --out (default results/<preset>/browser/) and, with
   --docs-shot FILE, copies the chart there.

    make browser-check PRESET=converged SNAKEMAKE_ARGS=finished_only=true \
        DOCS_SHOT=docs/mlflow_compare.png     # the README's screenshot

Every Chromium is a fresh, isolated, headless process: --no-sandbox --disable-gpu --disable-quic
--no-first-run --disable-background-networking --disable-component-update --disable-sync and a
new --user-data-dir; the only server is mlflow on the loopback interface.
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
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]
CATEGORIES = ("Tables", "Paper figures", "Accuracy", "Cost")
# every method logs it per epoch (its last readout): the README's chart of two methods' runs
CHART_METRIC = "val_acc_last"


class CheckFailed(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[browser-check] {msg}", flush=True)


def chromium() -> str:
    """The Chromium binary; installs Debian's chromium and its driver when either is missing and we are root."""
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if found and shutil.which("chromedriver"):
        return found
    if os.geteuid() != 0:
        raise CheckFailed("no Chromium found; install it (Debian: `sudo apt-get install chromium chromium-driver`)")
    log("installing chromium and chromium-driver with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True, env=env)
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


def webdriver_chromium(browser: str, size: str = "1600,1000") -> Any:
    """Selenium on Chromium with a fresh profile: nothing stored in the browser, as a new user's."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise CheckFailed("selenium is missing: `pip install -e '.[browser]'` (make browser-check does it)") from e
    driver = shutil.which("chromedriver")
    if driver is None:
        raise CheckFailed("no chromedriver found; install it (Debian: `sudo apt-get install chromium-driver`)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    profile = tempfile.mkdtemp(prefix="chromium-")
    for flag in [f for f in FLAGS if f != "--headless"] + ["--headless=new", f"--window-size={size}",
                                                          f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    web = webdriver.Chrome(service=Service(driver), options=opts)
    web.implicitly_wait(30)  # each find waits for the page's scripts to draw what it looks for
    web.asge_profile = profile  # removed by close()
    return web


def close(web: Any) -> None:
    web.quit()
    shutil.rmtree(web.asge_profile, ignore_errors=True)


def find(web: Any, how: str, what: str, description: str) -> Any:
    """An element that must be there (waits for it), else a CheckFailed that says which."""
    from selenium.common.exceptions import WebDriverException

    try:
        return web.find_element(how, what)
    except WebDriverException:
        raise CheckFailed(f"{description} is not on the page at {web.current_url}") from None


def click(web: Any, xpath: str, what: str) -> Any:
    from selenium.common.exceptions import WebDriverException

    try:
        el = web.find_element("xpath", xpath)
        web.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        el.click()
    except WebDriverException as e:
        raise CheckFailed(f"could not click {what} at {web.current_url}: {e.msg}") from None
    return el


def tick_run(web: Any, name: str) -> None:
    """Tick a run's row in the runs table (ag-grid keeps the checkbox in a pinned copy of the row)."""
    row = find(web, "xpath", f"//a[normalize-space(.)='{name}']/ancestor::div[@role='row']", f"the runs table's row of {name}")
    row = row.get_attribute("row-index")
    click(web, f"//div[@role='row' and @row-index='{row}']//input[contains(@class, 'ag-checkbox-input')]",
          f"the checkbox of {name}")


def scroll_to_link(web: Any, text: str, what: str) -> None:
    """Click link `text` in a scrolled, virtualised table (rows far down are not in the DOM yet)."""
    first = find(web, "xpath", "//a[contains(@href, '#/metric?')]", "the compare view's metrics table")
    box = web.execute_script("let e = arguments[0]; while (e && !(e.scrollHeight > e.clientHeight + 5 && "
                             "getComputedStyle(e).overflowY != 'visible')) e = e.parentElement; return e;", first)
    web.implicitly_wait(0)
    try:
        for _ in range(200):
            if web.find_elements("xpath", f"//a[normalize-space(.)='{text}']") or box is None:
                break
            web.execute_script("arguments[0].scrollTop += 150", box)
            time.sleep(0.1)
    finally:
        web.implicitly_wait(30)
    click(web, f"//a[normalize-space(.)='{text}']", what)


def check_mlflow(browser: str, store: str, experiment: str, pair: tuple[str, str], out: Path,
                 docs_shot: Path | None) -> None:
    """The README's clicks, from a fresh profile: its URL, "Model training", the experiment, two
    runs ticked, Compare, then the metric `CHART_METRIC`, whose chart must draw both runs."""
    port = free_port()
    proc = start_mlflow(store, port, out / "mlflow_ui.log")
    base = f"http://127.0.0.1:{port}"
    web = None
    try:
        found = api(base, "experiments/search", {"max_results": 1000})["experiments"]
        exp = next((e for e in found if e["name"] == experiment), None)
        if exp is None:
            raise CheckFailed(f"experiment {experiment!r} is not in {store}")
        runs = api(base, "runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 1000,
                                         "filter": "tags.asge.superseded IS NULL"})["runs"]
        names = {r["info"]["run_name"] for r in runs}
        if not set(pair) <= names:
            raise CheckFailed(f"runs {pair} are not both in {experiment!r} ({sorted(names)})")
        web = webdriver_chromium(browser)
        web.get(base)  # the README's URL
        click(web, "//*[normalize-space(text())='Model training']", "the sidebar's 'Model training'")
        web.save_screenshot(str(out / "mlflow_home.png"))
        click(web, f"//a[normalize-space(.)='{experiment}']", f"the experiment {experiment}")
        for name in pair:
            tick_run(web, name)
        web.implicitly_wait(0)  # the rows are drawn: count, without waiting for a missing one
        listed = [n for n in names if web.find_elements("xpath", f"//a[normalize-space(.)='{n}']")]
        web.implicitly_wait(30)
        log(f"mlflow runs table at {web.current_url.split('?')[0]}: {len(listed)} of {len(names)} runs listed")
        web.save_screenshot(str(out / "mlflow_runs.png"))
        click(web, "//button[normalize-space(.)='Compare']", "Compare")
        for name in pair:
            find(web, "xpath", f"//*[normalize-space(text())='{name}']", f"the compare view's column of {name}")
        web.set_window_size(1600, 2200)  # the parameter and metric tables below the plot are part of the view
        web.save_screenshot(str(out / "mlflow_compare.png"))
        log(f"mlflow compare view shows {pair[0]} and {pair[1]}")
        web.set_window_size(1600, 1000)
        scroll_to_link(web, CHART_METRIC, f"the metric {CHART_METRIC} in the compare view")
        find(web, "css selector", ".js-plotly-plot", f"the chart of {CHART_METRIC}")
        drawn = [n for n in pair if web.find_elements("xpath", f"//*[normalize-space(text())='{n} ({CHART_METRIC})']")]
        if drawn != list(pair):
            raise CheckFailed(f"the {CHART_METRIC} chart draws {drawn}, not both of {pair}")
        time.sleep(2)  # plotly's transition
        web.save_screenshot(str(out / "mlflow_chart.png"))
        log(f"mlflow chart of {CHART_METRIC} draws {pair[0]} and {pair[1]}")
        if docs_shot is not None:
            docs_shot.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(out / "mlflow_chart.png", docs_shot)
            log(f"chart copied to {docs_shot}")
    finally:
        if web is not None:
            close(web)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def import_runs(runs: Path, store: str, prefix: str) -> None:
    """The preset's finished run folders into the store, as the README says for committed results
    (idempotent: runs already there are skipped)."""
    if not runs.is_dir():
        return
    cmd = [sys.executable, "-m", "asge.tracking", "import", str(runs), "--uri", store, "--experiment-prefix", prefix]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800,
                       env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    if p.returncode != 0:
        raise CheckFailed(f"importing {runs} into {store} failed: {p.stderr[-3000:]}")
    log(p.stdout.strip().splitlines()[-1] if p.stdout.strip() else f"imported {runs}")


def default_pair(runs_csv: Path) -> tuple[str, str]:
    """ASGE and BP of the lowest seed, on CIFAR-10 where the main study has it (the README's pair)."""
    import pandas as pd

    main_runs = pd.read_csv(runs_csv).query("study == 'main'")
    d = "cifar10" if "cifar10" in set(main_runs["dataset"]) else main_runs["dataset"].iloc[0]
    s = main_runs.query("dataset == @d")["seed"].min()
    return f"asge-{d}-s{s}", f"bp-{d}-s{s}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--repo", type=Path, default=REPO, help="workflow folder (default: this repository)")
    ap.add_argument("--store", default=None, help="tracking URI (default: sqlite:///<repo>/mlflow.db)")
    ap.add_argument("--report", type=Path, default=None, help="a report zip (default: build one)")
    ap.add_argument("--out", type=Path, default=None, help="screenshots (default: <repo>/results/<preset>/browser)")
    ap.add_argument("--compare", default=None, help="two run names, comma-separated (default: asge/bp, lowest "
                                                    "seed, on CIFAR-10 or else the runs table's first data set)")
    ap.add_argument("--docs-shot", type=Path, default=None, help="copy the chart's screenshot here")
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
        results = repo / "results" / ("" if args.preset == "paper" else args.preset)
        store = args.store or f"sqlite:///{repo / 'mlflow.db'}"
        import_runs(results / "runs", store, prefix)
        pair = tuple(args.compare.split(",")) if args.compare else default_pair(results / "tables" / "runs.csv")
        check_mlflow(browser, store, f"{prefix}main", pair, out, args.docs_shot)
    except CheckFailed as e:
        log(f"FAILED: {e}")
        return 1
    log(f"passed; screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
