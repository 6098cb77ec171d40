# Helpers of the workflow (and only helpers: the rules live in the other .smk files): the plan and
# the training jobs. The tables', figures' and report's helpers are in common_outputs.smk.
#
# The plan: the effective config (config/config.yaml <- preset <- command line) lists methods,
# data sets, seeds and ablation variants; `planned_runs()` turns them into Run records keyed by
# (study, run name), e.g. ("main", "asge-cifar10-s0"), ("ablations", "asge-cifar10-pool_avg-s0") or
# ("width", "asge-cifar10-eighth-s0").
# Every training job is one Run. Its config is resolved once, here (`resolved_request`); it is
# the job's param (saved as the run folder's request.yaml), so Snakemake's params trigger
# retrains exactly the runs whose settings changed.

import json
import os
import shlex
from dataclasses import dataclass, field
from functools import lru_cache

import yaml
from snakemake.exceptions import WorkflowError

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
