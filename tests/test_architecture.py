"""The house rules of ARCHITECTURE.md, checked on the code: floors, no import cycles, top-level imports."""

from __future__ import annotations

import ast
import pathlib

import grimp
import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "sparseforge"

#: Imports that may stay inside functions: optional dependencies (TVM through the codegen floor, PyTorch, OpenVINO,
#: wasmtime) and the package root's lazy attributes.
OPTIONAL = ("torch", "wasmtime", "openvino", "matplotlib", "sparseforge.codegen", "sparseforge.driver", "sparseforge.api")


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("sparseforge", cache_dir=None)


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), function-level imports included."""
    modules = sorted(graph.modules)
    # a package's __init__ re-exporting its own submodules (pkg -> pkg.sub) is how packages work, not a cycle
    edges = {m: sorted(w for w in graph.find_modules_directly_imported_by(m) if not w.startswith(m + "."))
             for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in modules:
        if m not in index:
            visit(m)
    return found


def test_no_import_cycles(graph) -> None:
    cycles = _cycles(graph)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("low, high", [("sparseforge.runtime", "sparseforge.passes"),
                                       ("sparseforge.runtime", "sparseforge.driver"),
                                       ("sparseforge.codegen", "sparseforge.runtime"),
                                       ("sparseforge.codegen", "sparseforge.driver"),
                                       ("sparseforge.passes", "sparseforge.codegen"),
                                       ("sparseforge.ir", "sparseforge.passes")])
def test_floors(graph, low: str, high: str) -> None:
    chains = graph.find_shortest_chains(importer=low, imported=high, as_packages=True)
    assert not chains, f"{low} must not import {high}: {sorted(chains)[:3]}"


def _local_imports(path: pathlib.Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import):
                found += [(node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against the module's package
                    package = path.relative_to(SRC.parent).with_suffix("").parts[:-node.level]
                    name = ".".join((*package, node.module or ""))
                else:
                    name = node.module or ""
                found += [(node.lineno, f"{name.rstrip('.')}.{alias.name}") for alias in node.names]
    return found


def test_imports_are_top_level_unless_optional() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        in_codegen = "codegen" in path.relative_to(SRC).parts
        for line, name in _local_imports(path):
            if name.startswith(OPTIONAL) and not (in_codegen and name.startswith("sparseforge.codegen")):
                continue  # optional dependency, imported where it is needed (codegen itself imports TVM freely)
            offenders.append(f"{path.relative_to(SRC)}:{line} imports {name} inside a function")
    assert not offenders, "\n".join(offenders)
