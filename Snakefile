# ASGE benchmark suite: train every method on every data set, track the runs in MLflow and
# rebuild the paper's tables and figures from the run folders.
#
#   snakemake --cores 2 --config preset=smoke     # the smoke run on a CPU (minutes)
#   snakemake --cores 2 --configfile my.yaml      # any keys on top of config.yaml and the preset
#   snakemake --profile profiles/slurm            # the paper preset on a SLURM cluster
#   snakemake --report report.zip                 # tables and figures with captions
#
# Layout as in the snakemake-workflows catalogue: rules in workflow/rules/*.smk, helpers only
# in workflow/rules/common.smk (configuration in common_config.smk, SLURM in common_slurm.smk), scripts in workflow/scripts/. See docs/workflow.md.

from snakemake.utils import min_version, validate

min_version("9.0")


include: "workflow/rules/common.smk"
include: "workflow/rules/common_config.smk"
include: "workflow/rules/common_slurm.smk"
include: "workflow/rules/common_outputs.smk"


# Snakemake's own layering, later wins: config.yaml, the preset it (or --config preset=...)
# names, then --configfile and --config from the command line.
configfile: checked_yaml("config/config.yaml")
configfile: preset_path(config)


config.update(typed(config))
checked_config(config, "workflow/schemas/config.schema.yaml")  # a short message first
validate(config, "workflow/schemas/config.schema.yaml")
setup_environment(config)
validate_runs()  # every run's training config, before any job starts
warn_without_gpu(config)


report: "workflow/report/workflow.rst"


include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        all_targets(),
    localrule: True
