"""Shared helpers of the workflow's scripts: logging into the rule's log, display names (from
the method registry and the data set catalog), number formatting, what every table function
shares (Table, Context), and tables written as Markdown, LaTeX and CSV without optional
dependencies (pandas' to_markdown needs tabulate, to_latex needs jinja2)."""

import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from asge.atomic import write_csv, write_text

NOT_RUN = "not run"


def _strategy_order() -> tuple[str, ...]:
    """Every registered method's strategies, in registration order (fusion, last, best, ga, sf)."""
    from asge.methods import registered_methods

    return tuple(dict.fromkeys(s for cls in registered_methods().values() for s in cls.strategies))


#: prediction strategies in display order, from the methods (ASGE/FF's Fusion, Last and Best Pred,
#: CwC-FF's GA and Sf, then a plug-in method's own)
STRATEGY_ORDER = _strategy_order()
DASH = "–"


def setup_logging(snakemake: Any) -> logging.Logger:
    """Send warnings, errors and tracebacks of the script into the rule's log file."""
    log_file = snakemake.log[0] if len(snakemake.log) else None
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_file, "w")
        sys.stderr = stream
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr, force=True)
    os.environ.setdefault("MPLBACKEND", "Agg")
    return logging.getLogger(Path(getattr(snakemake, "rule", "script")).name)


# --- names ------------------------------------------------------------------------------------
#: display names of methods the suite does not run but whose reported numbers T1 lists
REPORTED_ONLY = {"deeperforward": "DeeperForward", "dtg-ff": "DTG-FF"}


def suite_methods() -> list[str]:
    """The methods this suite can run (the registry)."""
    from asge.methods import list_methods

    return list_methods()


def method_name(m: str) -> str:
    """A method's display name: the registry's, else a reported-only method's, else the key."""
    from asge.methods import method_class

    if m in suite_methods():
        return getattr(method_class(m), "display_name", m)
    return REPORTED_ONLY.get(m, m)


def strategy_name(method: str, strategy: str) -> str:
    """How tables and figures name a method's strategy (its class says: Fusion, GA, ...)."""
    from asge.methods import method_class

    return method_class(method).strategy_name(strategy) if method in suite_methods() else strategy


def dataset_keys() -> list[str]:
    """The data sets of the catalog, in its order."""
    from asge.data.catalog import DATASETS

    return list(DATASETS)


def dataset_name(d: str) -> str:
    """A data set's display name from the catalog (the key for an unknown one)."""
    from asge.data.catalog import DATASETS

    return DATASETS[d].display_name if d in DATASETS else d


def dataset_classes(d: str) -> int:
    """The number of classes of a data set (10 for an unknown one: the chance line of a figure)."""
    from asge.data.catalog import DATASETS

    return DATASETS[d].num_classes if d in DATASETS else 10


# --- numbers ----------------------------------------------------------------------------------
def finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def pct(v: Any, digits: int = 2) -> str:
    """An accuracy in [0, 1] as a percentage string."""
    return f"{float(v) * 100:.{digits}f}" if finite(v) else DASH


def mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> tuple[float, float, int, str]:
    """(mean, std, n, 'mean ± std (n=k)') of the finite values; std is the sample std (n-1)."""
    vals = [float(v) * scale for v in values if finite(v)]
    n = len(vals)
    if n == 0:
        return math.nan, math.nan, 0, NOT_RUN
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
    text = f"{mean:.{digits}f} ± {std:.{digits}f} (n={n})" if n > 1 else f"{mean:.{digits}f} (n=1)"
    return mean, std, n, text


def ci_text(low: Any, high: Any, digits: int = 2) -> str:
    """A confidence interval as "[low, high]"; "–" where it is undefined (n = 1, no runs)."""
    return f"[{float(low):.{digits}f}, {float(high):.{digits}f}]" if finite(low) and finite(high) else DASH


def mib(v: Any) -> str:
    return f"{float(v) / 2**20:.1f}" if finite(v) else DASH


def human_int(v: Any) -> str:
    if not finite(v):
        return DASH
    v = float(v)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.2f}{unit}"
    return f"{v:.0f}"


def width_text(w: float) -> str:
    """A width fraction as a reader writes it: 1/8, 1/4, 1."""
    return str(Fraction(w).limit_denominator(64)) if finite(w) else DASH


def signed(v: Any, digits: int = 2) -> str:
    return f"{float(v):+.{digits}f}" if finite(v) else DASH


def join_unique(values: Iterable[Any]) -> str:
    seen = []
    for v in values:
        s = str(v)
        if s not in seen and s not in ("nan", "None", ""):
            seen.append(s)
    return ", ".join(seen) if seen else DASH


# --- a group of runs (rows of runs.csv) in words ----------------------------------------------
def seeds_of(g: pd.DataFrame) -> str:
    return join_unique(int(s) for s in sorted(g["seed"].unique()))


def epochs_of(g: pd.DataFrame) -> str:
    return join_unique(int(e) for e in sorted(g["epochs"].unique()))


def hardware_of(g: pd.DataFrame) -> str:
    return join_unique(g["hardware"])


def ints(g: pd.DataFrame, col: str) -> str:
    """The distinct integer values of a column ('–' when it has none)."""
    return join_unique(int(v) for v in g[col] if finite(v))


def scale_note(runs: pd.DataFrame) -> list[str]:
    """A note when runs used data subsets (smoke/tiny presets)."""
    sub = runs["cfg_subset_per_class"].dropna().unique()
    tsub = runs["cfg_test_subset_per_class"].dropna().unique()
    if len(sub) or len(tsub):
        return [f"Measured on data subsets (subset_per_class={join_unique(int(s) for s in sub)}, "
                f"test_subset_per_class={join_unique(int(s) for s in tsub)}): a pipeline check, not a "
                f"reproduction of the reported numbers."]
    return []


# --- what every table function shares (tables.py, tables_paired.py) ---------------------------
@dataclass
class Table:
    """One table: `data` the tidy numbers (the CSV), `show` the same rows for reading (md, tex,
    html), `notes` the paragraphs below it."""

    data: pd.DataFrame
    show: pd.DataFrame
    notes: list[str] = field(default_factory=list)


class Context:
    """The runs split by study and the workflow's settings, shared by every table. `runs` has every
    column of runs.csv (runs_schema.read_runs), also when it has no row."""

    def __init__(self, runs: pd.DataFrame, cfg: dict[str, Any]) -> None:
        self.all = runs
        self.cfg = cfg
        self.main = runs[runs["study"] == "main"]
        self.primary = self.main[self.main["is_primary"].astype(bool)]
        self.reported = pd.DataFrame(cfg["reported"], columns=["method", "dataset", "metric", "value", "source",
                                                               "version"])
        self.preset = cfg["preset"]
        self.run_files = {k: (json.loads(v) if v else {}) for k, v in (cfg.get("run_files") or {}).items()}
        self.ablations = self.all[self.all["study"] == "ablations"]
        #: runs.csv of the shorter-budget study (`budget_reference`), for T10; None when not configured
        self.budget_runs: pd.DataFrame | None = None

    def not_run(self, method: str, dataset: str) -> str:
        """The text of a cell without runs (with the configured reason where there is one)."""
        for item in self.cfg["not_run"]:
            if item["method"] == method and item["dataset"] == dataset:
                return f"{NOT_RUN} ({item['reason']})"
        if method not in self.cfg["methods"] and method not in suite_methods():
            return f"{NOT_RUN} (not in this suite)"
        return NOT_RUN

    def measured_note(self, runs: pd.DataFrame) -> list[str]:
        """The note on what was measured (and on data subsets, where used)."""
        notes = [f"Measured here (preset '{self.preset}'): test accuracy in %, mean ± sample std over seeds "
                 f"(n = number of seeds); seeds, epochs and hardware are given per row."]
        return notes + scale_note(runs)


def pair(runs: pd.DataFrame, method: str, dataset: str) -> pd.DataFrame:
    """The rows of one method on one data set."""
    return runs[(runs["method"] == method) & (runs["dataset"] == dataset)]


# --- writers ---------------------------------------------------------------------------------
def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(_md_cell(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "Δ": r"$\Delta$",
        "–": "--", "×": r"$\times$", "≥": r"$\geq$", "α": r"$\alpha$", "−": "$-$", "†": r"$^\dagger$",
        "‡": r"$^\ddagger$", "θ": r"$\theta$", "≤": r"$\leq$", "·": r"$\cdot$", "→": r"$\rightarrow$"}


def tex_escape(s: Any) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(s))


#: tables with more columns than this are scaled to the text width (\\resizebox)
LATEX_RESIZE_COLUMNS = 6


def to_latex(df: pd.DataFrame, caption: str, label: str, notes: Sequence[str] = ()) -> str:
    """A booktabs table (needs \\usepackage{booktabs,graphicx}); wide tables are scaled down
    to the text width so that they fit a page; notes go below as footnote-sized paragraphs."""
    cols = list(df.columns)
    wide = len(cols) > LATEX_RESIZE_COLUMNS
    out = ["% needs \\usepackage{booktabs} and, for \\resizebox, \\usepackage{graphicx}",
           "\\begin{table}[t]", "\\centering", "\\small", f"\\caption{{{tex_escape(caption)}}}",
           f"\\label{{{label}}}"]
    if wide:
        out.append("\\resizebox{\\textwidth}{!}{%")
    out += ["\\begin{tabular}{" + "l" * len(cols) + "}", "\\toprule",
            " & ".join(tex_escape(c) for c in cols) + " \\\\", "\\midrule"]
    for row in df.itertuples(index=False):
        out.append(" & ".join(tex_escape(v) for v in row) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}" + ("}" if wide else "")]
    for n in notes:
        out.append(f"\\par\\smallskip\\footnotesize {tex_escape(n)}")
    out.append("\\end{table}")
    return "\n".join(out) + "\n"


HTML_STYLE = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:14px;margin:12px;color:#222}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}li{margin:3px 0;max-width:70em}"""


def to_html(df: pd.DataFrame, title: str, notes: Sequence[str] = ()) -> str:
    """A standalone HTML page with the table, its title and notes (what the Snakemake report
    shows in place: a CSV there is only a download)."""
    from html import escape

    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>\n"
                   for row in df.itertuples(index=False))
    items = "".join(f"<li>{escape(n)}</li>" for n in notes)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{HTML_STYLE}</style></head><body>\n<h3>{escape(title)}</h3>\n"
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>\n"
            f"{'<ul>' + items + '</ul>' if items else ''}\n</body></html>\n")


def write_table(df: pd.DataFrame, data: pd.DataFrame, paths: dict[str, str], title: str, label: str,
                notes: Sequence[str] = ()) -> None:
    """`df` (display strings) as Markdown, LaTeX and (when `paths` has "html") HTML with title
    and notes; `data` (raw numbers, tidy) as CSV."""
    for p in paths.values():
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    md = [f"**{title}**", "", to_markdown(df)]
    md += [f"- {n}" for n in notes]
    write_text(paths["md"], "\n".join(md).rstrip() + "\n")
    write_text(paths["tex"], to_latex(df, title, label, notes))
    write_csv(paths["csv"], data)
    if "html" in paths:
        write_text(paths["html"], to_html(df, title, notes))
