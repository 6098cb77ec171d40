# The run folders are the source of truth: one tidy table of every finished run.


rule aggregate:
    input:
        unpack(aggregate_inputs),
    output:
        # update(): a failed rebuild puts the previous files back instead of deleting them
        table=update(results("tables", "runs.csv")),
        html=report(
            update(results("tables", "runs.html")),
            caption="../report/runs.rst",
            category="Tables",
            labels={"table": "Every run (tidy)"},
        ),
    log:
        results("logs", "aggregate.log"),
    params:
        # the workflow/scripts modules that the script imports (common_outputs.smk: _scripts_digest)
        code=SCRIPTS_DIGEST,
    localrule: True
    conda:
        "../envs/asge.yaml"
    script:
        "../scripts/aggregate.py"
