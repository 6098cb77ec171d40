"""The shape of the code base: import floors, import circles, file and function lengths.

    python -m tests.house          # prints the report that issue #27's closing note quotes

Floors: the longest chain of internal imports (a module imports another of `asge`, `baselines`,
`tools` or `workflow/scripts`), counting the modules on it; imports inside functions count (they are
dependencies too), imports under `if TYPE_CHECKING:` do not (they never run).
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def source_files() -> list[Path]:
    """The library and workflow sources (not tests)."""
    return sorted([*REPO.glob("asge/**/*.py"), *REPO.glob("baselines/**/*.py"), *REPO.glob("tools/*.py"),
                   *REPO.glob("workflow/scripts/*.py")])


def module_name(path: Path) -> str:
    """The import name of a source file (workflow scripts import each other by bare name)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[:2] == ["workflow", "scripts"]:
        parts = parts[2:]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from the module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Internal module -> the internal modules it imports (at run time)."""
    files = {module_name(f): f for f in source_files()}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                     and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        deps = set()
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            for target in _imported(node, name, path.name == "__init__.py"):
                while target and target not in files:  # `from asge.x import f` -> asge.x
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import circles (each once, as a path back to its start)."""
    found, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                found.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def floors(graph: dict[str, set[str]]) -> list[str]:
    """The longest import chain (modules, top first); call only on a graph without circles."""
    memo: dict[str, list[str]] = {}

    def chain(m: str) -> list[str]:
        if m not in memo:
            memo[m] = [m] + max((chain(n) for n in sorted(graph[m])), key=len, default=[])
        return memo[m]

    return max((chain(m) for m in sorted(graph)), key=len)


def function_lengths() -> list[tuple[int, str]]:
    """(lines, file:function) of every function and method, longest first."""
    out = []
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(REPO)}:{node.name}"))
    return sorted(out, reverse=True)


def file_lengths() -> list[tuple[int, str]]:
    """(lines, file), longest first."""
    return sorted(((len(p.read_text().splitlines()), str(p.relative_to(REPO))) for p in source_files()), reverse=True)


def main() -> None:
    graph = import_graph()
    found = circles(graph)
    print(f"modules: {len(graph)}; import circles: {len(found)}", *(" -> ".join(c) for c in found), sep="\n  ")
    if not found:
        top = floors(graph)
        print(f"floors: {len(top)} ({' -> '.join(top)})")
    print("largest files:", ", ".join(f"{f} {n}" for n, f in file_lengths()[:6]))
    print("longest functions:", ", ".join(f"{f} {n}" for n, f in function_lengths()[:6]))


if __name__ == "__main__":
    main()
