"""The package's import graph: no cycle, no cross-module private import, every import downwards.

Imports are read with ``ast`` at every depth (module top and inside functions),
so a lazy import cannot hide a cycle; ``importlib.import_module`` with a name
built from a constant prefix counts as an import of every module that name
could be.  ``docs/architecture.md`` draws the
layers below; a new module must be placed in one of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "appliance"

#: Which module may import which: a module imports only from its own layer or lower ones.
#: A name ending in ".*" stands for a package and all its modules.
LAYERS = {
    0: ["appliance", "appliance.errors", "appliance.safety", "appliance.files", "appliance.compat"],
    1: ["appliance.workdir", "appliance.pipelines", "appliance.graph", "appliance.pin", "appliance.digest",
        "appliance.crdsenv", "appliance.resources", "appliance.records", "appliance.parameters",
        "appliance.stepguard"],
    2: ["appliance.recipe.*", "appliance.simulate.*", "appliance.postprocess.registry", "appliance.associations",
        "appliance.manifest", "appliance.incremental", "appliance.releases"],
    3: ["appliance.plan", "appliance.postprocess", "appliance.postprocess.planner", "appliance.postprocess.common",
        "appliance.postprocess.background", "appliance.postprocess.catalog", "appliance.postprocess.preview",
        "appliance.postprocess.astrometry", "appliance.postprocess.report", "appliance.stages", "appliance.runner",
        "appliance.execute", "appliance.sources.*", "appliance.prefetch", "appliance.engine", "appliance.image",
        "appliance.launch", "appliance.compare.*", "appliance.backends", "appliance.progress"],
    4: ["appliance.session"],
    5: ["appliance.reduction", "appliance.fetch", "appliance.export", "appliance.reproduce", "appliance.regress",
        "appliance.upgrade"],
    6: ["appliance.commands.*", "appliance.cli"],
}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[tuple[str, str | None]]:
    """(imported module, imported name) pairs, resolved to the deepest module of the package."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = name.split(".") if is_package else name.split(".")[:-1]
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [(f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix, a.name) for a in node.names]
        elif dynamic := _import_module_prefix(node):
            # importlib.import_module(f"appliance.sources.{kind}"): every module the name could be
            targets = [(m, None) for m in known if m == dynamic or m.startswith(dynamic)]
        else:
            continue
        for target, imported in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("appliance") and target != name:
                out.add((target, imported if target != imported else None))
    return out


def _import_module_prefix(node: ast.AST) -> str | None:
    """The module name (or its constant start) an ``importlib.import_module(...)`` call imports, if any."""
    if not (isinstance(node, ast.Call) and node.args
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return arg.values[0].value
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[tuple[str, str | None]]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def layer_of(name: str) -> int:
    best = None
    for layer, patterns in LAYERS.items():
        for pattern in patterns:
            if pattern == name or pattern.endswith(".*") and (name == pattern[:-2] or name.startswith(pattern[:-1])):
                best = layer
    assert best is not None, f"{name} is in no layer of tests/test_architecture.py (and docs/architecture.md)"
    return best


def test_no_import_cycle(graph):
    edges = {m: {t for t, _ in deps} for m, deps in graph.items()}

    def face(a: str, b: str) -> bool:  # a package's __init__ importing its own submodule
        return b.startswith(a + ".") or a.startswith(b + ".")

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if face(m, t):
                continue
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if not state.get(t):
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if not state.get(m):
            visit(m)


def test_no_module_imports_another_modules_private_name(graph):
    private = sorted(f"{m} imports {t}.{n}" for m, deps in graph.items() for t, n in deps
                     if n and n.startswith("_") and not n.startswith("__"))
    assert private == []


def test_every_import_goes_down_the_layers(graph):
    upward = sorted(f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
                    for m, deps in graph.items() for t, _ in deps if layer_of(t) > layer_of(m))
    assert upward == []


def test_only_the_cli_imports_a_command_module(graph):
    offenders = sorted(f"{m} imports {t}" for m, deps in graph.items() for t, _ in deps
                       if t.startswith("appliance.commands") and not m.startswith(("appliance.commands", "appliance.cli")))
    assert offenders == []


def test_the_import_reader_sees_lazy_imports(tmp_path):
    """The reader itself: an import inside a function counts as much as one at the top."""
    pkg = tmp_path / "appliance"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from appliance import b\n")
    (pkg / "b.py").write_text("from appliance.a import f\n")
    known = {"appliance": pkg / "__init__.py", "appliance.a": pkg / "a.py", "appliance.b": pkg / "b.py"}
    edges = {n: {t for t, _ in imports_of(n, p, known)} for n, p in known.items()}
    assert "appliance.b" in edges["appliance.a"] and "appliance.a" in edges["appliance.b"]


def test_the_import_reader_sees_modules_imported_by_name(tmp_path):
    """``importlib.import_module(f"appliance.kinds.{kind}")`` is an edge to every module under that prefix."""
    pkg = tmp_path / "appliance"
    (pkg / "kinds").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "kinds" / "__init__.py").write_text("")
    (pkg / "kinds" / "one.py").write_text("")
    (pkg / "a.py").write_text("import importlib\ndef f(kind):\n    return importlib.import_module(f'appliance.kinds.{kind}')\n")
    known = {"appliance": pkg / "__init__.py", "appliance.a": pkg / "a.py", "appliance.kinds": pkg / "kinds" / "__init__.py",
             "appliance.kinds.one": pkg / "kinds" / "one.py"}
    assert {t for t, _ in imports_of("appliance.a", pkg / "a.py", known)} == {"appliance.kinds.one"}
