"""The shape of the package: no import circles, and ACM's wire facts in one module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aioacm"
WIRE_STRINGS = ("/diamond-server", "Probe-Modify-Request", "longPullingTimeout")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of the package that ``path`` imports, wherever the import statement is
    (module level, inside functions, under ``if TYPE_CHECKING``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & known
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in ``target`` itself
                found.add(target)
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_and_deferred_imports() -> None:
    graph = import_graph()
    assert "aioacm.dialects.acm" in graph["aioacm.client"]
    assert "aioacm.keys" in graph["aioacm.dialects.acm"]
    assert "aioacm.server.faults" in graph["aioacm.server.records"]  # under TYPE_CHECKING


def test_no_import_circles_in_the_package() -> None:
    assert cycles(import_graph()) == []


def test_the_watch_machinery_never_imports_a_client() -> None:
    graph = import_graph()
    for name in ("aioacm.watch", "aioacm.polling", "aioacm.lookup", "aioacm.transport"):
        assert not {"aioacm.client", "aioacm.base"} & graph[name], name


def test_acm_wire_strings_live_in_the_acm_dialect_only() -> None:
    holders = {
        name
        for name, path in modules().items()
        if not name.startswith("aioacm.server")  # the bundled server speaks the wire too
        and any(s in path.read_text(encoding="utf-8") for s in WIRE_STRINGS)
    }
    assert holders == {"aioacm.dialects.acm"}


def test_no_module_over_500_lines() -> None:
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()
    }
    assert {name: n for name, n in sizes.items() if n > 500} == {}
    assert sizes["aioacm.client"] <= 400
