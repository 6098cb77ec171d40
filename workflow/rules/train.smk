# Training: one job per planned run (see planned_runs in common.smk), calling the suite's
# training command. The run folder results/runs/<study>/<run>/ holds config.yaml, history.csv,
# metrics.json (written last) and checkpoint.pt. The checkpoint is not a declared output, so
# it survives Snakemake's removal of a failed job's outputs and a rerun resumes from it. The
# job records the digest of its settings (settings.id) beside it: when a rerun comes with
# other settings (the params or the run file changed), the stale checkpoint is removed first.


rule train:
    input:
        unpack(tracking_inputs),
    output:
        metrics=results("runs", "{study}", "{run}", "metrics.json"),
        history=results("runs", "{study}", "{run}", "history.csv"),
        config=results("runs", "{study}", "{run}", "config.yaml"),
    log:
        results("logs", "train", "{study}", "{run}.log"),
    wildcard_constraints:
        study="|".join(STUDIES),
        run=other_run_regex(),
    params:
        method=lambda wildcards: get_run(wildcards).method,
        dataset=lambda wildcards: get_run(wildcards).dataset,
        sets=train_sets,
        settings=settings_id,
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
        "export OMP_WAIT_POLICY=PASSIVE; out=$(dirname {output.metrics:q}); mkdir -p \"$out\"; "
        "if [ -f \"$out/checkpoint.pt\" ] && [ -f \"$out/settings.id\" ] "
        "&& [ \"$(cat \"$out/settings.id\")\" != {params.settings} ]; then "
        "echo 'settings changed: removing the stale checkpoint' >{log:q}; rm \"$out/checkpoint.pt\"; fi; "
        "echo {params.settings} >\"$out/settings.id\"; "
        "{params.launcher} --method {params.method} --dataset {params.dataset} --out \"$out\" "
        "{params.sets} --set threads={threads} {params.tracking} >>{log:q} 2>&1"


use rule train as train_asge with:
    output:
        metrics=results("runs", "{study}", "{run}", "metrics.json"),
        history=results("runs", "{study}", "{run}", "history.csv"),
        config=results("runs", "{study}", "{run}", "config.yaml"),
        goodness=results("runs", "{study}", "{run}", "goodness.pt"),
    wildcard_constraints:
        study="|".join(STUDIES),
        run=asge_run_regex(),
