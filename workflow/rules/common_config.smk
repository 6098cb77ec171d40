# Helpers of the workflow that load and check the configuration, and set up the jobs'
# environment (Snakefile: config.yaml <- preset <- command line, then the schema). Kept apart from
# common.smk (the plan) and common_outputs.smk (tables, figures, report).

import json
import os
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

# --- configuration ---------------------------------------------------------------------------
def preset_path(config):
    """config/presets/<preset>.yaml (or `preset_file`): the Snakefile loads it with `configfile:`
    after config/config.yaml, and Snakemake puts --configfile/--config on top of both."""
    name = config.get("preset", "paper")
    path = config.get("preset_file") or os.path.join("config", "presets", f"{name}.yaml")
    if not os.path.isfile(path):
        known = sorted(p.stem for p in Path("config", "presets").glob("*.yaml"))
        raise WorkflowError(f"preset {name!r}: {path} does not exist; known presets: {', '.join(known)}")
    return checked_yaml(path)


def checked_yaml(path):
    """`path` once it parses as YAML: Snakemake's own message names neither the file nor the line."""
    try:
        yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise WorkflowError(f"{where}: not valid YAML ({problem}); fix that line and rerun") from None
    return path


def checked_config(config, schema_path):
    """Validate the layered config against the schema with a message of a few lines (Snakemake's
    own prints the whole schema): the key's path, what is wrong and, for a misspelt key, the
    nearest known one."""
    import difflib

    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    hint = ""
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        unknown = [k for k in error.instance if k not in known]
        near = {k: difflib.get_close_matches(str(k), list(known), n=1) for k in unknown}
        hint = "".join(f" (did you mean {m[0]!r} for {k!r}?)" for k, m in near.items() if m)
        hint += f". Known keys here: {', '.join(sorted(known))}"
        if not error.absolute_path:
            hint += " (a run's training keys go under overrides, e.g. 'overrides={all: {epochs: 3}}')"
    raise WorkflowError(f"config {where}: {error.message}{hint}. The keys are commented in config/config.yaml "
                        "and listed in docs/configuration.md.")


def typed(value):
    """Command-line --config values arrive as strings inside lists and mappings (Snakemake reads
    them with YAML's BaseLoader); read such strings as YAML scalars so `seeds=[0,1]` are ints."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, str) and value.strip():  # '' stays '' (YAML would read it as null)
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if isinstance(parsed, (int, float, bool)) or parsed is None else value
    return value


def setup_environment(config):
    """Environment of every job: this Python first on PATH (so `python` is the one running
    Snakemake, even from an unactivated venv), the MLflow store (MLFLOW_TRACKING_URI from the
    environment wins over the config), no MLflow telemetry, passive OpenMP threads (spinning
    ones slow down parallel CPU jobs), and the host keys of the training config in $ASGE_RUNTIME:
    the environment, not a rule param, so that moving the data reruns nothing."""
    # a user's method modules (docs/extending.md), before anything here imports asge.methods;
    # relative .py paths from the working directory, so that every job finds them
    plugins = [os.path.abspath(p) if p.endswith(".py") else p for p in config.get("plugins") or []]
    var = "ASGE_PLUGINS"  # also read by every job (asge.methods); a user's own setting is kept
    already = [p for p in os.environ.get(var, "").split(",") if p]
    os.environ[var] = ",".join(dict.fromkeys([*already, *plugins]))
    from asge.config import HOST_KEYS
    from asge.runconfig import RUNTIME_ENV

    bindir = os.path.dirname(sys.executable)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bindir:
        os.environ.update(PATH=os.pathsep.join([bindir, os.environ.get("PATH", "")]))
    host = {k: config[k] for k in HOST_KEYS if config.get(k) is not None}
    # ASGE_WAIT_FOR_LOCK: a job started beside an orphaned one of the same run folder (after
    # `snakemake --unlock`) waits for it instead of failing, which would make Snakemake delete
    # the folder's outputs (an environment variable, not a flag: a changed shell command would
    # make Snakemake retrain every finished run)
    os.environ.update(MLFLOW_TRACKING_URI=tracking_uri(config), MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
                      OMP_WAIT_POLICY="PASSIVE", ASGE_WAIT_FOR_LOCK="1", **{RUNTIME_ENV: json.dumps(host, sort_keys=True)})


def tracking_uri(config):
    """The MLflow store; a relative sqlite path is made absolute against the working directory."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or config["mlflow"]["tracking_uri"]
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not os.path.isabs(uri[len(prefix):]):
        uri = f"{prefix}{os.path.abspath(uri[len(prefix):])}"
    return uri


def warn_without_gpu(config):
    """One line at planning time when the preset's jobs refuse to train without CUDA and this machine
    has none: otherwise they fail one by one, with the reason only in each job's log."""
    import torch
    from snakemake.logging import logger

    if config.get("require_gpu") and not torch.cuda.is_available():
        logger.warning(f"preset {config.get('preset')!r}: its {len(planned_runs())} training runs need a CUDA GPU "
                       "(require_gpu: true) and this machine has none; jobs that run here will fail. On a CPU use "
                       "--config preset=smoke, reference or converged (docs/workflow.md), or submit to a GPU "
                       "cluster (--profile profiles/slurm).")
