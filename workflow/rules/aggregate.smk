# The run folders are the source of truth: one tidy table of every finished run.


rule aggregate:
    input:
        unpack(aggregate_inputs),
    output:
        table=report(
            results("tables", "runs.csv"),
            caption="../report/runs.rst",
            category="Tables",
            labels={"table": "runs (tidy)"},
        ),
    log:
        results("logs", "aggregate.log"),
    params:
        plan=lambda wildcards: [
            {"study": r.study, "run": r.name, "variant": r.variant or ""}
            for r in planned_runs().values()
        ],
    localrule: True
    conda:
        "../envs/asge.yaml"
    script:
        "../scripts/aggregate.py"
