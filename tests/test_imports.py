"""The import graph of ``detkit/`` (module- and function-level imports, read from the AST) has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "detkit"


def module_names(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """Every module of the package under ``root`` by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imported_names(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Dotted names each ``import`` / ``from ... import`` of ``tree`` may load, wherever it stands
    (module level, functions, ``if TYPE_CHECKING:``): ``from a import b`` names ``a`` and ``a.b``."""
    own_package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from ..x import y
                base = own_package.split(".")[: len(own_package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def _ancestors(module: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b"]``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """Module -> the package's modules it imports.

    Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first, so those packages are
    edges too, except the importer's own enclosing packages (already being imported when it runs).
    """
    modules = module_names(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        own = set(_ancestors(module))
        targets: set[str] = set()
        for name in _imported_names(tree, module, path.name == "__init__.py"):
            if name in modules:
                targets.update(m for m in [*_ancestors(name), name] if m in modules and m not in own)
        targets.discard(module)
        graph[module] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component with more than one module
    (Tarjan), each starting from its alphabetically first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_through(graph, component) for component in components]


def _cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle from the component's first module back to itself (breadth-first)."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node] & component):
                if successor == start:
                    return [*paths[node], start]
                if successor not in paths:
                    paths[successor] = [*paths[node], successor]
                    following.append(successor)
        frontier = following
    raise AssertionError(f"no cycle in component {sorted(component)}")  # Tarjan found one: unreachable


def test_detkit_imports_form_no_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles in detkit/:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_graph_sees_function_level_relative_and_package_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub.low import helper\n")
    (package / "sub" / "low.py").write_text("def helper():\n    from ..top import run\n")
    (package / "top.py").write_text("import pkg.sub.low\n")
    (package / "alone.py").write_text("from pkg.sub import low\n")
    graph = import_graph(package)
    assert graph["pkg.sub.low"] == {"pkg.top"}  # function-level, relative
    assert graph["pkg.top"] == {"pkg.sub", "pkg.sub.low"}  # the package whose __init__ runs too
    assert graph["pkg.alone"] == {"pkg.sub", "pkg.sub.low"}
    # pkg/sub/__init__ -> low -> (in a function) top -> pkg.sub: a cycle, named from its first module
    assert find_cycles(graph) == [["pkg.sub", "pkg.sub.low", "pkg.top", "pkg.sub"]]


@pytest.mark.parametrize("graph", [{"a": {"b"}, "b": {"c"}, "c": set()}, {"a": set()}])
def test_an_acyclic_graph_has_no_cycle(graph):
    assert find_cycles(graph) == []
