"""The shape of the house: an acyclic import graph, no reaching into private names, rooms
of a size one can hold in one's head.

A module may import another module's private (underscore) names only from the shared
private modules (``featviz._name``). ``TYPE_CHECKING`` imports are for annotations and do
not count towards cycles; imports made at run time with ``importlib.import_module`` (the
CLI's commands, the demo's sections) do. No module is over 800 lines and no function over
60 code lines; no file is written with ``np.save``/``json.dump`` outside the store and the
atomic-file helper.
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


def _dynamic(node: ast.Call) -> list[str]:
    """Modules named by ``importlib.import_module("featviz...")``, f-strings included.

    An f-string such as ``f"featviz.commands.{name}"`` stands for every module under its
    constant prefix.
    """
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name != "import_module" or not node.args:
        return []
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value] if arg.value.startswith("featviz") else []
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        prefix = str(arg.values[0].value)
        if prefix.startswith("featviz."):
            return [m for m in MODULES if m.startswith(prefix) and m != prefix.rstrip(".")]
    return []


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
        elif isinstance(node, ast.Call):
            found.extend((m, [], node.lineno) for m in _dynamic(node))
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


def test_graph_walk_sees_importlib_edges():
    # the CLI loads its commands with importlib; a command importing the CLI back is a cycle
    graph = _graph()
    assert "featviz.commands.cam" in graph["featviz.cli"]
    assert any(m.startswith("featviz.demo_sections.") for m in graph["featviz.demo"])
    tree = ast.parse('import importlib\nimportlib.import_module(f"featviz.commands.{x}")')
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call))
    assert "featviz.commands.cam" in _dynamic(call)


def test_no_command_imports_the_cli():
    offences = [
        f"{name} imports featviz.cli"
        for name, path in MODULES.items()
        if name.startswith("featviz.commands")
        for module, _, _ in _imports(path)
        if module == "featviz.cli"
    ]
    assert not offences


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


MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 60


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Distinct source lines holding code in ``fn``'s body, its docstring left out."""
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return len({n.lineno for b in body for n in ast.walk(b) if hasattr(n, "lineno")})


def _long_functions(tree: ast.AST) -> list[tuple[str, int]]:
    return [
        (n.name, _code_lines(n))
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        and _code_lines(n) > MAX_FUNCTION_LINES
    ]


def test_no_module_is_over_800_lines():
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()
    }
    big = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_no_function_is_over_60_code_lines():
    offences = [
        f"{name}.{fn} ({n} lines)"
        for name, path in MODULES.items()
        for fn, n in _long_functions(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not offences, "functions over 60 code lines: " + ", ".join(offences)


def test_function_size_counter_counts_code_not_docstrings():
    src = 'def f():\n    """Doc.\n\n    More.\n    """\n' + "".join(
        f"    x{i} = {i}\n" for i in range(61)
    )
    assert _long_functions(ast.parse(src)) == [("f", 61)]
    assert _long_functions(ast.parse(src.replace("    x60 = 60\n", ""))) == []


_WRITERS = {("np", "save"), ("np", "savez"), ("np", "savez_compressed"), ("json", "dump")}
_STORE_MODULES = ("featviz._store", "featviz._io")


def _file_writers(tree: ast.AST) -> list[int]:
    """Lines calling ``np.save``/``np.savez*``/``json.dump`` (``json.dumps`` is a string)."""
    return [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Name)
        and (n.func.value.id, n.func.attr) in _WRITERS
    ]


def test_files_are_written_only_by_the_store_and_the_atomic_file_helper():
    offences = [
        f"{name}:{line}"
        for name, path in MODULES.items()
        if not name.startswith(_STORE_MODULES)
        for line in _file_writers(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not offences, "np.save/json.dump outside the store: " + ", ".join(offences)
