"""The package layout's promises (issue #14): the registry is a leaf, files stay small."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 400


def test_registry_imports_no_method_module():
    code = ("import sys, asge.registry; "
            "print(sorted(m for m in sys.modules if m.startswith('baselines') or m in ('asge.methods.asge', 'asge.methods')))")
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


def test_no_import_circle_and_at_most_eight_floors():
    from tests import house

    graph = house.import_graph()
    assert {"asge.train", "asge.config", "baselines.ff", "tables"} <= set(graph)  # the walk found the house
    assert house.circles(graph) == []
    top = house.floors(graph)
    assert len(top) <= 8, f"{len(top)} floors (aim: <= 8): {' -> '.join(top)}"


def test_no_function_outside_tests_is_over_60_lines():
    from tests import house

    long = [(n, f) for n, f in house.function_lengths() if n > 60]
    assert not long, f"functions over 60 lines (split them): {long}"


def test_the_circle_finder_finds_a_circle():
    from tests import house

    assert house.circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert house.floors({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"c"}}) == ["a", "b", "c"]
