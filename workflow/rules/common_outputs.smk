# Helpers of the workflow's outputs (and only helpers: the rules live in tables.smk, figures.smk and
# aggregate.smk): the tables and figures a plan builds, their inputs and report captions, the
# default target, and the report's folding of missing-metadata warnings. Kept apart from
# common.smk, which holds the plan and the training jobs' helpers (planned_runs, run_files, ...).

import atexit
import hashlib
import importlib.util
import logging
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger


# --- tables and figures --------------------------------------------------------------------------
#: workflow/scripts, the tables' and figures' code
SCRIPTS_DIR = Path(workflow.current_basedir).parent / "scripts"


def _table_registry():
    """workflow/scripts/table_registry.py, the one list of the tables (standard library only)."""
    path = SCRIPTS_DIR / "table_registry.py"
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
    digest = hashlib.sha256()
    for path in sorted(SCRIPTS_DIR.glob("*.py")):
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
