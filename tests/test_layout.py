"""The shape of the house: an acyclic import graph, no reaching into private names.

A module may import another module's private (underscore) names only from the shared
private modules (``featviz._name``). ``TYPE_CHECKING`` imports are for annotations and do
not count towards cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import featviz

SRC = Path(featviz.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    name = ".".join(parts)
    return name.removesuffix(".__init__")


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, imported names, line)`` of every featviz import outside TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip |= {id(n) for b in node.body for n in ast.walk(b)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "featviz":
                found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "featviz":
                    found.append((alias.name, [], node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for module, names, _ in _imports(path):
            targets = {module}
            # `from featviz import _ops` imports the submodule featviz._ops
            targets |= {f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES}
            for t in targets:
                if t in MODULES and t != name and t != "featviz":
                    graph[name].add(t)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_graph_walk_sees_real_edges():
    # guards the test itself: known imports must be found
    graph = _graph()
    assert "featviz._ops" in graph["featviz.cam._pipeline"]
    assert "featviz.hooks" in graph["featviz.cam._pipeline"]
    assert "featviz._scoring" in graph["featviz.metrics._common"]
    assert "featviz.metrics.curves" in graph["featviz.metrics"]


def test_import_graph_is_acyclic():
    assert _cycle(_graph()) is None, "import cycle: " + " -> ".join(_cycle(_graph()) or [])


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_another_modules_private_names():
    offences = []
    for name, path in MODULES.items():
        for module, names, line in _imports(path):
            shared = module.rsplit(".", 1)[-1].startswith("_")
            private = [
                n
                for n in names
                if n.startswith("_")
                and n != "__version__"
                and f"{module}.{n}" not in MODULES  # a shared private module itself
            ]
            if private and not shared and module != name:
                offences.append(f"{path.name}:{line} imports {private} from {module}")
    assert not offences, "\n".join(offences)


def test_exports_and_type_checking_block_agree():
    tree = ast.parse((SRC / "__init__.py").read_text(encoding="utf-8"))
    checked: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module:
                    for alias in stmt.names:
                        checked[alias.name] = stmt.module
    exports = dict(featviz._EXPORTS)
    submodules = {f"featviz.{m}" for m in featviz._SUBMODULES}
    static = {n: m for n, m in checked.items() if m != "featviz"}
    assert static == exports
    assert {f"featviz.{n}" for n, m in checked.items() if m == "featviz"} == submodules
    for name, module in exports.items():
        assert name in __import__(module, fromlist=["__all__"]).__all__, (name, module)
