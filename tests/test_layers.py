"""The package's folders are its layers (ARCHITECTURE.md): each imports only the layers below it,
the core reads no environment variable and imports no Dagster, and no module imports itself
back through others (an import cycle). Every import is counted, at module level or inside a
function, since a function-level import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "factorcov_pipeline"
NAME = "factorcov_pipeline"

# Which of our top-level parts each layer may import (ARCHITECTURE.md, "The layers").
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "storage": {"storage", "core", "environment"},
    "api": {"api", "storage", "core"},
    "render": {"render", "storage", "core"},
    "orchestration": {"orchestration", "api", "render", "storage", "core", "environment"},
    "environment": {"environment", "core"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = (NAME, *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path] | None = None) -> list[str]:
    """Every module imported anywhere in the file (absolute imports). `from a import b` is
    the module `a.b` when that is one of ``modules``, else `a`."""
    modules = MODULES if modules is None else modules
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return list(dict.fromkeys(found))


MODULES = _modules()


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles() -> None:
    graph = {
        mod: {n for n in _imports(path) if n in MODULES and n != mod}
        for mod, path in MODULES.items()
    }
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path) -> None:
    """The cycle test could fail: two modules importing each other are found, through a
    `from package import module` and a function-level import."""
    (tmp_path / "a.py").write_text("from pkg import b\n")
    (tmp_path / "b.py").write_text("def f():\n    import pkg.a\n")
    mods = {"pkg.a": tmp_path / "a.py", "pkg.b": tmp_path / "b.py"}
    graph = {m: {n for n in _imports(p, mods) if n in mods} for m, p in mods.items()}
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]
    assert _cycles({"pkg.a": {"pkg.b"}, "pkg.b": set()}) == []


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_layers_below(layer: str) -> None:
    wrong = []
    for mod, path in MODULES.items():
        if _part(mod) != layer:
            continue
        for name in _imports(path):
            if name.startswith(NAME + ".") and _part(name) not in ALLOWED[layer]:
                wrong.append(f"{mod} imports {name}")
    assert wrong == []


def test_core_is_pure() -> None:
    """No Dagster and no environment variables in the core (it takes its switches as
    arguments); DuckDB only in the user-data reader, which reads a user's DuckDB file."""
    wrong = []
    for mod, path in MODULES.items():
        if _part(mod) != "core":
            continue
        text = path.read_text()
        names = _imports(path)
        if any(n == "dagster" or n.startswith("dagster.") for n in names):
            wrong.append(f"{mod} imports dagster")
        if "os.environ" in text or "getenv(" in text:
            wrong.append(f"{mod} reads the environment")
        if "duckdb" in names and mod != f"{NAME}.core.userdata":
            wrong.append(f"{mod} imports duckdb")
    assert wrong == []
