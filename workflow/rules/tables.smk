# Tables T1-T6 and T8 from the tidy runs table, T7 from the model builders (no training).
# Each table is written as Markdown, LaTeX (booktabs), CSV (raw numbers) and HTML; the HTML
# version is the report item, because the report renders HTML in place and only offers a CSV
# for download.


rule tables:
    input:
        runs=results("tables", "runs.csv"),
    output:
        T1_main_md=results("tables", "T1_main.md"),
        T1_main_tex=results("tables", "T1_main.tex"),
        T1_main_csv=results("tables", "T1_main.csv"),
        T1_main_html=report(
            results("tables", "T1_main.html"),
            caption="../report/T1_main.rst",
            category="Tables",
            labels={"table": "T1. Main comparison"},
        ),
        T2_strategies_md=results("tables", "T2_strategies.md"),
        T2_strategies_tex=results("tables", "T2_strategies.tex"),
        T2_strategies_csv=results("tables", "T2_strategies.csv"),
        T2_strategies_html=report(
            results("tables", "T2_strategies.html"),
            caption="../report/T2_strategies.rst",
            category="Tables",
            labels={"table": "T2. Prediction strategies"},
        ),
        T3_pooling_md=results("tables", "T3_pooling.md"),
        T3_pooling_tex=results("tables", "T3_pooling.tex"),
        T3_pooling_csv=results("tables", "T3_pooling.csv"),
        T3_pooling_html=report(
            results("tables", "T3_pooling.html"),
            caption="../report/T3_pooling.rst",
            category="Tables",
            labels={"table": "T3. Pooling ablation"},
        ),
        T4_alpha_md=results("tables", "T4_alpha.md"),
        T4_alpha_tex=results("tables", "T4_alpha.tex"),
        T4_alpha_csv=results("tables", "T4_alpha.csv"),
        T4_alpha_html=report(
            results("tables", "T4_alpha.html"),
            caption="../report/T4_alpha.rst",
            category="Tables",
            labels={"table": "T4. α ablation"},
        ),
        T5_imagenet_md=results("tables", "T5_imagenet.md"),
        T5_imagenet_tex=results("tables", "T5_imagenet.tex"),
        T5_imagenet_csv=results("tables", "T5_imagenet.csv"),
        T5_imagenet_html=report(
            results("tables", "T5_imagenet.html"),
            caption="../report/T5_imagenet.rst",
            category="Tables",
            labels={"table": "T5. ImageNet"},
        ),
        T8_variants_md=results("tables", "T8_variants.md"),
        T8_variants_tex=results("tables", "T8_variants.tex"),
        T8_variants_csv=results("tables", "T8_variants.csv"),
        T8_variants_html=report(
            results("tables", "T8_variants.html"),
            caption="../report/T8_variants.rst",
            category="Tables",
            labels={"table": "T8. ASGE variants"},
        ),
        T6_cost_md=results("tables", "T6_cost.md"),
        T6_cost_tex=results("tables", "T6_cost.tex"),
        T6_cost_csv=results("tables", "T6_cost.csv"),
        T6_cost_html=report(
            results("tables", "T6_cost.html"),
            caption="../report/T6_cost.rst",
            category="Cost",
            labels={"table": "T6. Training cost"},
        ),
    log:
        results("logs", "tables.log"),
    params:
        cfg=lambda wildcards: {
            **{
                k: config.get(k)
                for k in ("preset", "methods", "datasets", "seeds", "not_run", "ablations", "reported")
            },
            # the paper-scale settings, against which T1 decides where a difference to a
            # reported number is meaningful
            "run_files": {
                f"{m}/{d}": run_file_text(m, d) for m in config["methods"] for d in config["datasets"]
            },
        },
    localrule: True
    conda:
        "../envs/asge.yaml"
    script:
        "../scripts/tables.py"


rule channel_scaling:
    output:
        md=results("tables", "T7_channel_scaling.md"),
        tex=results("tables", "T7_channel_scaling.tex"),
        csv=results("tables", "T7_channel_scaling.csv"),
        html=report(
            results("tables", "T7_channel_scaling.html"),
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
            run_file_text(m, config["channel_scaling"]["dataset"]) for m in ("asge", "cwc")
        ],
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
