"""The house rules of ARCHITECTURE.md, checked on the source: dependencies point down (nothing
in the library imports the applications built on it), no import cycle, and size limits."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "regionsearch"
#: the composition root (and what only it uses) may wire the applications into the library
COMPOSITION_ROOT = {"regionsearch.cli", "regionsearch.demo"}
APPS = ("api", "indexer")
#: ARCHITECTURE.md's layers, bottom up (first name after ``regionsearch.``; a dotted key is more
#: specific); a module may import only from its own layer or below
LAYERS = {
    "types": 0, "errors": 0, "masks": 0, "cache": 0, "render": 0, "imageio": 0,
    "config": 1, "manifest": 1,
    "models": 2, "store": 2, "vectors": 2, "migrations": 2, "testing.tiny": 2,
    "segment": 3, "embed": 3, "video": 3, "pipeline": 3, "consistency": 3, "scene": 3,
    "datadir": 4, "search": 4, "engine": 4, "runners": 4, "evaluation": 4, "client": 4, "testing": 4,
    "export": 4,
    "cli": 6, "demo": 6,
}
MAX_CLASS_LINES = 320
MAX_FUNCTION_LINES = 60
MAX_DATADIR_LINES = 250


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    return {_module_name(p): (p, ast.parse(p.read_text(encoding="utf-8"), str(p))) for p in sorted(LIB.rglob("*.py"))}


def _imports(name: str, path: Path, tree: ast.Module) -> set[str]:
    """Every module ``name`` imports, anywhere in the file (inside functions too), absolute."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # "from . import x" imports a module
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, tree) in mods.items():
        deps = set()
        for imp in _imports(name, path, tree):
            # the module itself, or the nearest package that is one of ours
            while imp and imp not in mods:
                imp = imp.rpartition(".")[0]
            if imp and imp != name:
                deps.add(imp)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_package_init(name: str, graph: dict[str, set[str]]) -> bool:
    return any(other.startswith(name + ".") for other in graph)


def test_the_library_never_imports_the_applications():
    offenders = []
    for name, (path, tree) in _modules().items():
        if name in COMPOSITION_ROOT:
            continue
        for imp in _imports(name, path, tree):
            if imp.split(".")[0] in APPS:
                offenders.append(f"{name} imports {imp}")
    assert offenders == []


def test_the_checks_see_imports_inside_functions():
    src = "def f():\n    from indexer.local import run_local\n    import api.app\n"
    got = _imports("regionsearch.x", LIB / "x.py", ast.parse(src))
    assert {"indexer.local", "api.app"} <= got
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_the_library():
    graph = _graph()
    # a package's __init__ re-exporting its own submodules is not a cycle between concerns
    for name in graph:
        if _is_package_init(name, graph):
            graph[name] = {d for d in graph[name] if not d.startswith(name + ".")}
    assert _cycles(graph) == []


def _layer(module: str) -> int | None:
    parts = module.split(".")[1:]
    if not parts:
        return None  # the package's own __init__ (re-exports)
    return LAYERS.get(".".join(parts[:2]), LAYERS.get(parts[0]))


def test_dependencies_point_down():
    graph = _graph()
    unknown = sorted(m for m in graph if m != "regionsearch" and _layer(m) is None)
    assert unknown == [], "give these modules a layer in LAYERS and ARCHITECTURE.md"
    upward = [f"{m} ({_layer(m)}) imports {d} ({_layer(d)})" for m, deps in sorted(graph.items())
              for d in sorted(deps) if m != "regionsearch" and d != "regionsearch" and _layer(d) > _layer(m)]
    assert upward == []


def _sizes() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    classes, functions = [], []
    for name, (_, tree) in _modules().items():
        for node in ast.walk(tree):
            n = (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "lineno") else 0
            if isinstance(node, ast.ClassDef):
                classes.append((f"{name}.{node.name}", n))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((f"{name}:{node.name}", n))
    return classes, functions


def test_size_limits():
    classes, functions = _sizes()
    assert [c for c in classes if c[1] > MAX_CLASS_LINES] == []
    assert [f for f in functions if f[1] > MAX_FUNCTION_LINES] == []
    assert dict(classes)["regionsearch.datadir.DataDir"] < MAX_DATADIR_LINES
