# Figures 1, 3 and 4 of the paper, one accuracy-per-epoch figure per data set and a cost figure,
# redrawn from the run folders (PNG for the report, PDF for papers). Report categories: Paper
# figures, Accuracy, Cost.


rule fig1_ff_layers:
    input:
        history=lambda wildcards: run_dir(figure_run("ff"), "history.csv"),
        metrics=lambda wildcards: run_dir(figure_run("ff"), "metrics.json"),
    output:
        png=report(
            figure_file("fig1_ff_layers", "png"),
            caption="../report/fig1.rst",
            category="Paper figures",
            labels={"figure": "Fig. 1: FF per-layer positive/negative accuracy"},
        ),
        pdf=figure_file("fig1_ff_layers", "pdf"),
    log:
        results("logs", "figures", "fig1_ff_layers.log"),
    params:
        kind="fig1",
    localrule: True
    conda:
        "../envs/asge.yaml"
    script:
        "../scripts/figures.py"


rule fig3_asge_layers:
    input:
        history=lambda wildcards: run_dir(figure_run("asge"), "history.csv"),
        metrics=lambda wildcards: run_dir(figure_run("asge"), "metrics.json"),
    output:
        png=report(
            figure_file("fig3_asge_layers", "png"),
            caption="../report/fig3.rst",
            category="Paper figures",
            labels={"figure": "Fig. 3: ASGE per-layer accuracy"},
        ),
        pdf=figure_file("fig3_asge_layers", "pdf"),
    log:
        results("logs", "figures", "fig3_asge_layers.log"),
    params:
        kind="fig3",
    localrule: True
    conda:
        "../envs/asge.yaml"
    script:
        "../scripts/figures.py"


rule fig4_goodness:
    input:
        goodness=lambda wildcards: run_dir(figure_run("asge"), "goodness.pt"),
        metrics=lambda wildcards: run_dir(figure_run("asge"), "metrics.json"),
    output:
        png=report(
            figure_file("fig4_goodness", "png"),
            caption="../report/fig4.rst",
            category="Paper figures",
            labels={"figure": "Fig. 4: ASGE goodness distributions"},
        ),
        pdf=figure_file("fig4_goodness", "pdf"),
    log:
        results("logs", "figures", "fig4_goodness.log"),
    params:
        kind="fig4",
    localrule: True
    conda:
        "../envs/asge.yaml"
    script:
        "../scripts/figures.py"


rule fig_accuracy:
    input:
        history=lambda wildcards: run_files(runs_of(study="main", dataset=wildcards.dataset), "history.csv"),
        metrics=lambda wildcards: run_files(runs_of(study="main", dataset=wildcards.dataset), "metrics.json"),
    output:
        png=report(
            figure_file("fig_accuracy_{dataset}", "png"),
            caption="../report/fig_accuracy.rst",
            category="Accuracy",
            labels={"figure": "Accuracy per epoch", "data set": "{dataset}"},
        ),
        pdf=figure_file("fig_accuracy_{dataset}", "pdf"),
    log:
        results("logs", "figures", "fig_accuracy_{dataset}.log"),
    wildcard_constraints:
        dataset="[a-z0-9]+",
    params:
        kind="accuracy",
    localrule: True
    conda:
        "../envs/asge.yaml"
    script:
        "../scripts/figures.py"


rule fig_cost:
    input:
        runs=results("tables", "runs.csv"),
    output:
        png=report(
            figure_file("fig_cost", "png"),
            caption="../report/fig_cost.rst",
            category="Cost",
            labels={"figure": "Training time and inference size"},
        ),
        pdf=figure_file("fig_cost", "pdf"),
    log:
        results("logs", "figures", "fig_cost.log"),
    params:
        kind="cost",
    localrule: True
    conda:
        "../envs/asge.yaml"
    script:
        "../scripts/figures.py"
