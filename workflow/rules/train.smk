# Training: one job per planned run (see planned_runs in common.smk). The job's param is the
# run's config, resolved once when the DAG is built (`resolved_request`), so a changed setting
# reruns exactly this run; the training command saves it as the run folder's request.yaml and
# trains what it says (asge.runfolder): config.yaml, history.csv, diagnostics.pt, metrics.json
# (written last) and checkpoint.pt. The checkpoint is not a declared output, so it survives
# Snakemake's removal of a failed job's outputs: a rerun resumes from it, also when only
# `epochs` grew; a checkpoint of other settings is discarded (--force: the workflow owns its
# run folders). The job has no input file, so a fresh clone's checkout times retrain nothing;
# nor does any other job feed it: a flag job upstream (even ancient()) would mark every
# finished run for retraining whenever it runs. The first job creates the MLflow store under a
# file lock (asge.tracking.store.make_client).


rule train:
    output:
        request=results("runs", "{study}", "{run}", "request.yaml"),
        metrics=results("runs", "{study}", "{run}", "metrics.json"),
        history=results("runs", "{study}", "{run}", "history.csv"),
        config=results("runs", "{study}", "{run}", "config.yaml"),
        diagnostics=results("runs", "{study}", "{run}", "diagnostics.pt"),
    log:
        results("logs", "train", "{study}", "{run}.log"),
    wildcard_constraints:
        study="|".join(STUDIES),
    params:
        request=run_request_json,
        out=lambda wildcards: run_dir(get_run(wildcards)),
        tracking=experiment_args,
        launcher=train_launcher,
    threads: job_resource("threads")
    resources:
        gpu=job_resource("gpu"),
        mem_mb=job_resource("mem_mb"),
        runtime=job_resource("runtime"),
        # read only by the SLURM executor (profiles/slurm); '' leaves the cluster's default
        slurm_account=lambda wildcards: slurm_setting("account"),
        slurm_partition=lambda wildcards: slurm_setting("partition"),
    conda:
        "../envs/asge.yaml"
    shell:
        "{params.launcher} --request {params.request:q} --out {params.out:q} --force "
        "--set threads={threads} {params.tracking} >{log:q} 2>&1"
