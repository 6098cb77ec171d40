# The MLflow store and experiments are created once, before any training job starts:
# parallel first writers to a new SQLite file crash in MLflow's schema migration.


rule mlflow_init:
    output:
        flag=mlflow_flag(),
    log:
        results("logs", "mlflow_init.log"),
    params:
        experiments=lambda wildcards: " ".join(f"--experiment {e}" for e in experiments()),
    threads: 1
    resources:
        gpu=0,
    localrule: True
    conda:
        "../envs/asge.yaml"
    shell:
        "python -m asge.tracking init {params.experiments} --flag {output.flag:q} >{log:q} 2>&1"
