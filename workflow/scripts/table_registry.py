"""The one list of the tables that `tables.py` builds: name -> what the rules and the formatter
need. The rules (common_outputs.smk) load it for the table jobs and the report; tables.py maps each name
to its function and refuses a name that is not here. Standard library only (the Snakemake
process reads it when it plans)."""

from typing import NamedTuple


class TableSpec(NamedTuple):
    report_label: str  # the report's short label
    category: str  # the report's category
    title: str  # the title above the table (Markdown, HTML) and its LaTeX caption
    latex_label: str


#: in the report's order (T7 is built from the model builders by channel_scaling.py, not here)
TABLES: dict[str, TableSpec] = {
    "T1_main": TableSpec("T1. Main comparison", "Tables",
                         "T1. Main comparison: test accuracy (%) measured here vs. reported", "tab:main"),
    "T2_strategies": TableSpec("T2. Prediction strategies", "Tables",
                               "T2. Prediction strategies: accuracy, inference parameters and memory", "tab:strategies"),
    "T3_pooling": TableSpec("T3. Pooling ablation", "Tables", "T3. Pooling ablation (ASGE)", "tab:pooling"),
    "T4_alpha": TableSpec("T4. α ablation", "Tables", "T4. Patch-rule exponent α ablation (ASGE)", "tab:alpha"),
    "T5_imagenet": TableSpec("T5. ImageNet", "Tables", "T5. ImageNet top-1 / top-5 (%) beside both paper versions",
                             "tab:imagenet"),
    "T8_variants": TableSpec("T8. ASGE variants", "Tables", "T8. ASGE variants (recipe study / ablations) beside BP",
                             "tab:variants"),
    "T9_paired": TableSpec("T9. ASGE against each baseline, paired by seed", "Tables",
                           "T9. ASGE against each baseline, paired by seed: difference in test accuracy "
                           "(percentage points)", "tab:paired"),
    "T10_budget": TableSpec("T10. Short budget against convergence", "Tables",
                            "T10. Short budget against convergence: test accuracy (%) and gap to BP", "tab:budget"),
    "T11_convergence": TableSpec("T11. Convergence of each run", "Tables",
                                 "T11. Did each run converge? Best validation accuracy and its last three epochs' gain",
                                 "tab:convergence"),
    "T12_width": TableSpec("T12. Width against the distance to the paper", "Tables",
                           "T12. Width: test accuracy (%) per width, gap to BP, and a labelled extrapolation to the "
                           "paper's width", "tab:width"),
    "T6_cost": TableSpec("T6. Training cost", "Cost", "T6. Training cost per method", "tab:cost"),
}
