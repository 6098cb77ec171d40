# Training: one job per planned run (see planned_runs in common.smk). The `request` rule writes
# the run's resolved config to results/runs/<study>/<run>/request.yaml; its param is that config
# and the training job's param its digest, so a changed setting reruns exactly this run. `train` trains what the request says into the
# same folder (asge.runfolder): config.yaml, history.csv, diagnostics.pt, metrics.json (written
# last) and checkpoint.pt. The checkpoint is not a declared output, so it survives Snakemake's
# removal of a failed job's outputs: a rerun resumes from it, also when only `epochs` grew. A
# checkpoint of other settings is discarded (--force: the workflow owns its run folders).


rule request:
    output:
        request=results("runs", "{study}", "{run}", "request.yaml"),
    log:
        results("logs", "request", "{study}", "{run}.log"),
    wildcard_constraints:
        study="|".join(STUDIES),
    params:
        request=run_request,
    localrule: True
    run:
        write_request(output.request, params.request)
        Path(log[0]).write_text(f"wrote {output.request}\n")


rule train:
    input:
        unpack(tracking_inputs),
        # ancient: a fresh clone's checkout times never retrain a committed run; the digest
        # param below reruns training exactly when the request changes
        request=ancient(results("runs", "{study}", "{run}", "request.yaml")),
    output:
        metrics=results("runs", "{study}", "{run}", "metrics.json"),
        history=results("runs", "{study}", "{run}", "history.csv"),
        config=results("runs", "{study}", "{run}", "config.yaml"),
        diagnostics=results("runs", "{study}", "{run}", "diagnostics.pt"),
    log:
        results("logs", "train", "{study}", "{run}.log"),
    wildcard_constraints:
        study="|".join(STUDIES),
    params:
        request=run_request_digest,
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
        "{params.launcher} --request {input.request:q} --out $(dirname {input.request:q}) --force "
        "--set threads={threads} {params.tracking} >{log:q} 2>&1"
