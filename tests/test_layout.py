"""The package layout's promises (issue #14): the registry is a leaf, files stay small."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 400


def test_registry_imports_no_method_module():
    code = ("import sys, asge.registry; "
            "print(sorted(m for m in sys.modules if m.startswith('baselines') or m in ('asge.asge_method', 'asge.methods')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_loading_the_methods_registers_every_method():
    from asge.methods import list_methods, method_class

    assert {"asge", "ff", "cwc", "bp", "bpvgg"} <= set(list_methods())
    assert all(method_class(m).name == m for m in list_methods())


def test_no_source_file_outside_tests_is_over_the_limit():
    files = [*REPO.glob("asge/**/*.py"), *REPO.glob("baselines/**/*.py"), *REPO.glob("workflow/**/*.py"),
             *REPO.glob("workflow/**/*.smk"), REPO / "Snakefile"]
    long = {str(f.relative_to(REPO)): n for f in files if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines (split by concern): {long}"


def test_the_workflow_schema_lists_the_catalog_data_sets():
    import yaml

    from asge.data.catalog import DATASETS

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["$defs"]["dataset"]["enum"] == list(DATASETS)
