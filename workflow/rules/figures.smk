# Figures 1, 3 and 4 of the paper, one accuracy-per-epoch figure per data set and a cost figure,
# redrawn from the run folders (PNG for the report, PDF for papers): one `figure` rule, the
# figures, their inputs, report categories and labels in common_outputs.smk (FIGURES, figure_inputs).
# update(): a failed rebuild puts the previous files back instead of deleting them.


rule figure:
    input:
        unpack(figure_inputs),
    output:
        png=report(
            update(figure_file("{figure}", "png")),
            # renders params.caption, the text of the figure's workflow/report/<stem>.rst
            caption="../report/figure.rst",
            category=lambda wildcards: figure_spec(wildcards.figure)[2],
            labels=figure_labels,
        ),
        pdf=update(figure_file("{figure}", "pdf")),
    log:
        results("logs", "figures", "{figure}.log"),
    wildcard_constraints:
        figure="|".join([*FIGURES, f"{ACCURACY_FIGURE}[a-z0-9]+"]),
    params:
        kind=lambda wildcards: figure_spec(wildcards.figure)[0],
        # the data set of an accuracy figure ('' for the others, which the report then shows as such)
        dataset=lambda wildcards: wildcards.figure[len(ACCURACY_FIGURE):]
        if wildcards.figure.startswith(ACCURACY_FIGURE)
        else "",
        methods=lambda wildcards: list(config["methods"]),
        # the papers' numbers, drawn as lines in the budget figure only (the width figure reads them from T12)
        reported=lambda wildcards: config["reported"] if wildcards.figure == "fig_budget" else [],
        caption=lambda wildcards: report_caption(figure_spec(wildcards.figure)[1]),
        # the workflow/scripts modules that the script imports (common_outputs.smk: _scripts_digest)
        code=SCRIPTS_DIGEST,
    localrule: True
    conda:
        "../envs/asge.yaml"
    script:
        "../scripts/figures.py"
