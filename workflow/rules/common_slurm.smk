# Helpers of the workflow for the SLURM profile (profiles/slurm): account, partition and the GPU
# limit of the training jobs. Kept apart from common.smk and common_outputs.smk, which hold the others.

import os
from functools import lru_cache

from snakemake.exceptions import WorkflowError

# --- SLURM (profiles/slurm) ------------------------------------------------------------------------
def slurm_executor():
    """True when this invocation submits jobs with the SLURM executor plugin (the workflow's own
    jobs inside SLURM run with `slurm-jobstep` and never decide over account or partition)."""
    plugin = workflow.executor_plugin
    return plugin is not None and plugin.name == "slurm"


def slurm_query(*cmd):
    """Output of a SLURM command, or '' when it fails (then nothing is demanded of the user)."""
    import subprocess

    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def slurm_needs(name):
    """Whether the cluster refuses a job without an explicit account / partition: an account when
    accounting enforces associations and the user has no default account, a partition when no
    partition is marked as the default."""
    import getpass

    if name == "partition":
        parts = slurm_query("sinfo", "-h", "-o", "%P").split()
        return bool(parts) and not any(p.endswith("*") for p in parts)
    enforce = slurm_query("scontrol", "show", "config")
    enforced = any(line.split("=")[0].strip() == "AccountingStorageEnforce"
                   and any(k in line for k in ("associations", "limits", "qos", "safe"))
                   for line in enforce.splitlines())
    default = slurm_query("sacctmgr", "-n", "-P", "show", "user", getpass.getuser(), "format=defaultaccount").strip()
    return enforced and not default


def lift_local_gpu_limit():
    """Under the SLURM executor, drop the global `gpu` limit of profiles/default. Snakemake loads
    that workflow profile beside `--profile profiles/slurm`, and its `resources: [gpu=1]` (the
    GPUs of one local machine) would cap every job's `gpu` at 1 and run one GPU job at a time on
    the whole cluster; there SLURM allocates the GPUs. (A dry run, -n, uses no executor plugin, so
    it still shows the local limit: add `--workflow-profile none` to see what SLURM will get.)"""
    if slurm_executor() and workflow.global_resources.get("gpu").value is not None:
        workflow.global_resources["gpu"] = None


@lru_cache(maxsize=None)
def slurm_setting(name):
    """The SLURM account or partition of the training jobs: config `slurm.<name>`, else the
    environment's SBATCH_<NAME> (what sbatch itself reads), else '' (the plugin's default: the
    cluster's default partition, the user's default account). Under the SLURM executor, a missing
    value that the cluster needs stops the workflow before anything is submitted."""
    value = (config.get("slurm") or {}).get(name) or os.environ.get(f"SBATCH_{name.upper()}", "")
    if not value and slurm_executor() and slurm_needs(name):
        example = "myproject" if name == "account" else "gpu"
        raise WorkflowError(
            f"profiles/slurm: this cluster needs a SLURM {name} for every job and none is set. Give it "
            f"with `export SBATCH_{name.upper()}={example}` or `--config 'slurm={{{name}: {example}}}'`"
            + (" (`sinfo -s` lists the partitions)" if name == "partition"
               else " (`sacctmgr show assoc user=$USER format=account` lists yours)"))
    return str(value)
