# Tables T1-T6 and T8 from the tidy runs table (one `table` job per table, names and report
# labels in common_outputs.smk's TABLES), T7 from the model builders (no training). Each table is
# written as Markdown, LaTeX (booktabs), CSV (raw numbers) and HTML; the HTML version is the
# report item, because the report renders HTML in place and only offers a CSV for download.
# Outputs are `update()`: Snakemake keeps the previous (committed) files while a job runs and
# puts them back when it fails, instead of deleting them (issue #28).


rule table:
    input:
        unpack(table_inputs),
    output:
        md=update(table_file("{table}", "md")),
        tex=update(table_file("{table}", "tex")),
        csv=update(table_file("{table}", "csv")),
        html=report(
            update(table_file("{table}", "html")),
            # one caption file for every table: it renders params.caption, the text of
            # workflow/report/{table}.rst (a report caption path takes no wildcards)
            caption="../report/table.rst",
            category=lambda wildcards: TABLES[wildcards.table][1],
            labels=lambda wildcards: {"table": TABLES[wildcards.table][0]},
        ),
    log:
        results("logs", "tables", "{table}.log"),
    wildcard_constraints:
        table="|".join(TABLES),
    params:
        cfg=lambda wildcards: {
            **{
                k: config.get(k)
                for k in ("preset", "methods", "datasets", "seeds", "not_run", "ablations", "width",
                          "reported", "budget_reference", "finished_only")
            },
            # the paper-scale settings, against which T1 decides where a difference to a
            # reported number is meaningful
            "run_files": {pair: run_file_text(*pair.split("/")) for pair in run_file_pairs()},
        },
        caption=lambda wildcards: report_caption(wildcards.table),
        # the workflow/scripts modules that the script imports (common_outputs.smk: _scripts_digest)
        code=SCRIPTS_DIGEST,
    localrule: True
    conda:
        "../envs/asge.yaml"
    script:
        "../scripts/tables.py"


rule channel_scaling:
    output:
        md=update(results("tables", "T7_channel_scaling.md")),
        tex=update(results("tables", "T7_channel_scaling.tex")),
        csv=update(results("tables", "T7_channel_scaling.csv")),
        html=report(
            update(results("tables", "T7_channel_scaling.html")),
            caption="../report/T7_channel_scaling.rst",
            category="Cost",
            labels={"table": "T7. Channel scaling"},
        ),
    log:
        results("logs", "channel_scaling.log"),
    params:
        dataset=config["channel_scaling"]["dataset"],
        classes=config["channel_scaling"]["classes"],
        run_files=lambda wildcards: [
            default_request(m, config["channel_scaling"]["dataset"]) for m in ("asge", "cwc")
        ],
        # the workflow/scripts modules that the script imports (common_outputs.smk: _scripts_digest)
        code=SCRIPTS_DIGEST,
    threads: 1
    localrule: True
    conda:
        "../envs/asge.yaml"
    script:
        "../scripts/channel_scaling.py"


rule recipe_study:
    # `snakemake recipe_study --config preset=recipe`: the runs of the recipe preset and T8.
    input:
        [table_file("T8_variants", f) for f in TABLE_FORMATS],
    localrule: True
