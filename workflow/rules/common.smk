# Helpers of the workflow (and only helpers: the rules live in the other .smk files).
#
# The plan: the effective config (config/config.yaml <- preset <- command line) lists methods,
# data sets, seeds and ablation variants; `planned_runs()` turns them into Run records keyed by
# (study, run name), e.g. ("main", "asge-cifar10-s0"), ("ablations", "asge-cifar10-pool_avg-s0") or
# ("width", "asge-cifar10-eighth-s0").
# Every training job is one Run. Its config is resolved once, here (`resolved_request`); it is
# the job's param (saved as the run folder's request.yaml), so Snakemake's params trigger
# retrains exactly the runs whose settings changed.

import atexit
import json
import logging
import os
import shlex
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from asge.runfolder import run_name  # the run folders' naming scheme (torch-free)

STUDIES = ("main", "ablations", "width")


# --- configuration: loading and checking it lives in common_config.smk -----------------------------


def results(*parts):
    """A path under the results folder."""
    return os.path.join(config["results"], *parts)


# --- the plan ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    study: str
    name: str
    method: str
    dataset: str
    seed: int
    variant: str | None = None
    variant_settings: dict = field(default_factory=dict, compare=False, hash=False)


def not_run_reason(method, dataset):
    """Why a method/data-set pair is left out, or None."""
    for item in config["not_run"]:
        if item["method"] == method and item["dataset"] == dataset:
            return item["reason"]
    return None


def seeds_of(method, dataset):
    """The main study's seeds of a pair: `seeds_by` "<method>/<dataset>", else "<dataset>", else `seeds`."""
    by = config.get("seeds_by") or {}
    return by.get(f"{method}/{dataset}", by.get(dataset, config["seeds"]))


@lru_cache(maxsize=None)
def planned_runs():
    """{(study, name): Run} for every training run of the effective config."""
    runs = {}
    for m in config["methods"]:
        for d in config["datasets"]:
            if not_run_reason(m, d):
                continue
            for s in seeds_of(m, d):
                runs[("main", run_name(m, d, s))] = Run("main", run_name(m, d, s), m, d, s)
    abl = config.get("ablations") or {}
    for variant, settings in (abl.get("variants") or {}).items():
        for s in abl["seeds"]:
            name = run_name(abl["method"], abl["dataset"], s, variant)
            runs[("ablations", name)] = Run("ablations", name, abl["method"], abl["dataset"], s, variant, settings or {})
    wid = config.get("width") or {}  # the main study's methods at other widths (a scale study)
    unknown = sorted(set(wid.get("seeds_by") or {}) - set(wid.get("variants") or {}))
    if unknown:  # a misspelt variant would silently train every seed of it
        raise WorkflowError(f"width.seeds_by names {', '.join(unknown)}, which width.variants does not list "
                            f"({', '.join(wid.get('variants') or {}) or 'none'}): fix the name in the preset")
    for variant, settings in (wid.get("variants") or {}).items():
        for m in wid["methods"]:
            for s in (wid.get("seeds_by") or {}).get(variant, wid["seeds"]):
                name = run_name(m, wid["dataset"], s, variant)
                runs[("width", name)] = Run("width", name, m, wid["dataset"], s, variant, settings or {})
    if config.get("finished_only"):  # tables and figures of a study in progress, nothing trained
        runs = {k: r for k, r in runs.items() if os.path.exists(run_dir(r, "metrics.json"))}
    return runs


def runs_of(study=None, method=None, dataset=None, seed=None):
    return [r for r in planned_runs().values()
            if (study is None or r.study == study) and (method is None or r.method == method)
            and (dataset is None or r.dataset == dataset) and (seed is None or r.seed == seed)]


def studies():
    return [s for s in STUDIES if runs_of(study=s)]


def get_run(wildcards):
    try:
        return planned_runs()[(wildcards.study, wildcards.run)]
    except KeyError:
        raise WorkflowError(f"{wildcards.study}/{wildcards.run} is not a run of preset {config['preset']!r}")


def run_dir(run, *parts):
    return results("runs", run.study, run.name, *parts)


def run_files(runs, name):
    return [run_dir(r, name) for r in runs]


# --- what a training job gets ------------------------------------------------------------------
def run_layers(run):
    """The run's training-config layers from the workflow config (all -> method -> data set ->
    pair -> variant, then the seed); the run file config/runs/<method>/<dataset>.yaml goes below."""
    ov = config["overrides"]
    layers = [ov.get("all"), (ov.get("method") or {}).get(run.method), (ov.get("dataset") or {}).get(run.dataset),
              (ov.get("method_dataset") or {}).get(f"{run.method}/{run.dataset}"), run.variant_settings,
              {"seed": run.seed}]
    return [layer for layer in layers if layer]


@lru_cache(maxsize=None)
def resolved_request(study, name):
    """The request of a run: its config resolved once, here, without the host keys (asge.runconfig).
    A misspelt key, a wrong type or an impossible value stops the workflow before any job runs."""
    from asge.config import HOST_KEYS, ConfigError
    from asge.runconfig import request_of, resolve

    run = planned_runs()[(study, name)]
    host = sorted(k for layer in run_layers(run) for k in layer if k in HOST_KEYS)
    if host:
        raise WorkflowError(f"run {study}/{name}: {', '.join(host)} cannot be set per run; set them at the top "
                            f"level of the workflow config (they apply to every job)")
    try:
        return request_of(resolve(run.method, run.dataset, layers=run_layers(run)))
    except (ConfigError, ValueError) as e:
        raise WorkflowError(f"run {study}/{name}: {e}") from None


def validate_runs():
    """Resolve every planned run now (see resolved_request)."""
    for study, name in planned_runs():
        resolved_request(study, name)


@lru_cache(maxsize=None)
def default_request(method, dataset):
    """The resolved config of a method's run file alone (T7's builders read it; a rerun trigger)."""
    from asge.runconfig import request_of, resolve

    return request_of(resolve(method, dataset))


@lru_cache(maxsize=None)
def run_file_pairs():
    """The "<method>/<dataset>" pairs whose run files the tables read: the main study's, and the
    width study's (T12 measures width as a fraction of the run file's channels)."""
    pairs = [f"{m}/{d}" for m in config["methods"] for d in config["datasets"]]
    wid = config.get("width") or {}
    return list(dict.fromkeys(pairs + [f"{m}/{wid['dataset']}" for m in wid.get("methods", [])]))


def run_file_text(method, dataset):
    """The run file config/runs/<method>/<dataset>.yaml as canonical JSON ('' when the method has
    none): the paper-scale settings against which T1 judges comparability."""
    from asge.runconfig import default_run_file

    path = default_run_file(method, dataset)
    if not path.is_file():
        return ""
    return json.dumps(yaml.safe_load(path.read_text()) or {}, sort_keys=True)


def run_request_json(wildcards):
    """The resolved request of the wildcards' run as JSON: the training job's param (its rerun
    trigger), saved by the training command as the run folder's request.yaml."""
    get_run(wildcards)
    return json.dumps(resolved_request(wildcards.study, wildcards.run), sort_keys=True)


def experiment_args(wildcards):
    """MLflow arguments of the training command ('' when tracking is off)."""
    if not config["mlflow"]["enabled"]:
        return ""
    exp = experiment_name(wildcards.study)
    return f"--mlflow-experiment {shlex.quote(exp)} --run-name {shlex.quote(wildcards.run)}"


def experiment_name(study):
    """MLflow experiment of a study: <experiment_prefix><study>, e.g. main or smoke-main."""
    return f"{config['mlflow'].get('experiment_prefix', '')}{study}"


def job_resource(name):
    """A resource function of training jobs: resources[name], overridden per data set."""

    def get(wildcards):
        if name == "gpu":
            lift_local_gpu_limit()  # before Snakemake constrains this value by the global limit
        run = get_run(wildcards)
        by = (config["resources"].get("by_dataset") or {}).get(run.dataset) or {}
        return by.get(name, config["resources"][name])

    return get


def train_launcher(wildcards):
    """The training command: plain Python for one GPU (or CPU), torchrun with one process per
    GPU when the job asks for several (data-parallel, see asge/distributed.py)."""
    gpus = job_resource("gpu")(wildcards)
    if gpus > 1:
        return f"python -m torch.distributed.run --standalone --nproc_per_node {gpus} -m asge.train"
    return "python -m asge.train"


# --- tables and figures --------------------------------------------------------------------------
def _table_registry():
    """workflow/scripts/table_registry.py, the one list of the tables (standard library only)."""
    import importlib.util

    path = Path(workflow.current_basedir).parent / "scripts" / "table_registry.py"
    spec = importlib.util.spec_from_file_location("table_registry", path)
    registry = importlib.util.module_from_spec(spec)  # (not `module`: a Snakemake keyword)
    spec.loader.exec_module(registry)
    return registry


def _scripts_digest():
    """A hash of workflow/scripts/*.py. Snakemake's code trigger sees only a rule's own script, not
    the modules it imports (tables_width.py, figures_width.py, ...); as a param of the rules that
    run these scripts, the hash reruns them when any of those modules changes. A param, not an
    input, because a fresh clone's file times are arbitrary and its missing metadata triggers
    nothing: a clone rebuilds nothing."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((Path(workflow.current_basedir).parent / "scripts").glob("*.py")):
        for part in (path.name.encode(), b"\0", path.read_bytes()):
            digest.update(part)
    return digest.hexdigest()[:16]


SCRIPTS_DIGEST = _scripts_digest()


#: the tables of workflow/scripts/tables.py: name -> (report label, report category); each has
#: its caption in workflow/report/<name>.rst
TABLES = {name: (t.report_label, t.category) for name, t in _table_registry().TABLES.items()}
TABLE_FORMATS = ("md", "tex", "csv", "html")
#: the figures: name -> (kind drawn by workflow/scripts/figures.py, caption file stem in
#: workflow/report/, report category, report label); fig_accuracy_<data set> is one per data set
FIGURES = {
    "fig1_ff_layers": ("fig1", "fig1", "Paper figures", "Fig. 1: FF per-layer positive/negative accuracy"),
    "fig3_asge_layers": ("fig3", "fig3", "Paper figures", "Fig. 3: ASGE per-layer accuracy"),
    "fig4_goodness": ("fig4", "fig4", "Paper figures", "Fig. 4: ASGE goodness distributions"),
    "fig_cost": ("cost", "fig_cost", "Cost", "Training time and inference size"),
    "fig_budget": ("budget", "fig_budget", "Accuracy", "Short budget against convergence"),
    "fig_width": ("width", "fig_width", "Accuracy", "Width against the distance to the paper"),
}
ACCURACY_FIGURE = "fig_accuracy_"


def table_names():
    """The tables this plan builds: T10 only where a shorter-budget study is configured, T12 only
    where a width study is planned."""
    return [t for t in TABLES if (t != "T10_budget" or config.get("budget_reference"))
            and (t != "T12_width" or runs_of(study="width"))]


def table_inputs(wildcards):
    """The runs table, and for T10 the shorter-budget study's runs table (`budget_reference`)."""
    inputs = {"runs": results("tables", "runs.csv")}
    if wildcards.table == "T10_budget":
        if not config.get("budget_reference"):
            raise WorkflowError("T10_budget needs `budget_reference`: the runs.csv of a shorter-budget study")
        inputs["reference"] = config["budget_reference"]
    return inputs


def table_file(name, fmt):
    return results("tables", f"{name}.{fmt}")


def figure_file(name, fmt="png"):
    return results("figures", f"{name}.{fmt}")


def report_caption(stem):
    """The text of workflow/report/<stem>.rst: one rule serves several report items, and
    Snakemake takes a caption path without wildcards, so the rule's caption file renders this
    text from the job's params (`{{ snakemake.params.caption }}`)."""
    return Path(workflow.basedir, "workflow", "report", f"{stem}.rst").read_text()


def figure_spec(name):
    """(kind, caption stem, report category, report label) of a figure name."""
    if name.startswith(ACCURACY_FIGURE):
        return ("accuracy", "fig_accuracy", "Accuracy", "Accuracy per epoch")
    return FIGURES[name]


def figure_labels(wildcards):
    """The report labels of a figure (the accuracy figures also name their data set)."""
    labels = {"figure": figure_spec(wildcards.figure)[3]}
    if wildcards.figure.startswith(ACCURACY_FIGURE):
        labels["data set"] = wildcards.figure[len(ACCURACY_FIGURE):]
    return labels


def figure_inputs(wildcards):
    """What a figure is drawn from: run folders' files, or the runs table for the cost figure."""
    kind = figure_spec(wildcards.figure)[0]
    if kind == "cost":
        return {"runs": results("tables", "runs.csv")}
    if kind == "budget":
        if not config.get("budget_reference"):
            raise WorkflowError("fig_budget needs `budget_reference`: the runs.csv of a shorter-budget study")
        return {"runs": results("tables", "runs.csv"), "reference": config["budget_reference"]}
    if kind == "width":  # drawn from the table it illustrates
        return {"table": table_file("T12_width", "csv")}
    if kind == "accuracy":
        runs = runs_of(study="main", dataset=wildcards.figure[len(ACCURACY_FIGURE):])
        return {"history": run_files(runs, "history.csv"), "metrics": run_files(runs, "metrics.json")}
    run = figure_run("ff" if kind == "fig1" else "asge")
    if kind == "fig4":  # ASGE's goodness samples: diagnostics.pt["goodness"]
        return {"diagnostics": run_dir(run, "diagnostics.pt"), "metrics": run_dir(run, "metrics.json")}
    return {"history": run_dir(run, "history.csv"), "metrics": run_dir(run, "metrics.json")}


def figure_run(method):
    """The main-study run that Fig. 1 (ff) / Fig. 3, 4 (asge) show: the configured data set and
    seed if planned, else the first planned run of the method."""
    fig = config["figures"]
    runs = runs_of(study="main", method=method, dataset=fig["dataset"], seed=fig["seed"]) or runs_of(study="main", method=method)
    return runs[0] if runs else None


def figure_names():
    """The figures this plan can draw (a figure whose runs are not planned is left out)."""
    names = []
    if figure_run("ff"):
        names.append("fig1_ff_layers")
    if figure_run("asge"):
        names += ["fig3_asge_layers", "fig4_goodness"]
    names += [f"fig_accuracy_{d}" for d in config["datasets"] if runs_of(study="main", dataset=d)]
    if runs_of(study="main"):
        names.append("fig_cost")
        if config.get("budget_reference"):
            names.append("fig_budget")
    if runs_of(study="width"):
        names.append("fig_width")
    return names


def aggregate_inputs(wildcards):
    runs = list(planned_runs().values())
    return {"metrics": run_files(runs, "metrics.json"), "configs": run_files(runs, "config.yaml"),
            "histories": run_files(runs, "history.csv")}


def all_targets():
    """Everything the default target builds: every planned run, the runs table, all tables and
    figures. The runs are named here, not only as the runs table's inputs: Snakemake (since 7.7)
    does not rebuild an existing output for a missing input, so a run added to a study whose
    runs.csv is committed (a fresh clone, no Snakemake records) would otherwise never train."""
    targets = run_files(planned_runs().values(), "metrics.json") + [results("tables", "runs.csv")]
    targets += [table_file("T7_channel_scaling", f) for f in TABLE_FORMATS]
    targets += [table_file(t, f) for t in table_names() for f in TABLE_FORMATS]
    targets += [figure_file(n, f) for n in figure_names() for f in ("png", "pdf")]
    return targets


# --- the report --------------------------------------------------------------------------------
class FoldMissingMetadata(logging.Filter):
    """Snakemake's report warns once per output that has no metadata in .snakemake/, which is not
    committed: a report of committed results in a fresh clone printed 236 such lines. They are
    folded into one line at exit that says what it means."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def filter(self, record):
        if str(record.msg).startswith("Missing metadata for file "):
            self.count += 1
            return False
        return True

    def summary(self):
        if self.count:
            print(f"Note: {self.count} outputs have no Snakemake metadata in .snakemake/ (not committed: a fresh "
                  "clone, or files made on another machine); the report lists them without their job's rule, "
                  "command and times. Harmless; a rebuild that runs their jobs records it.", file=sys.stderr)


_missing_metadata = FoldMissingMetadata()
logger.addFilter(_missing_metadata)
atexit.register(_missing_metadata.summary)
