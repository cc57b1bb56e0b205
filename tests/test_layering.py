"""Dependency direction inside the package (style.md §2), checked with an ast scan.

Every import counts, also the lazy ones inside functions: a module may import only the
modules of the layers listed above its own (``LAYERS``), inside ``infer/`` and
``evaluation/`` only the modules listed before it (``INNER``), and the module import graph
has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bsafusion"

# Each top-level module or package may import only those listed above it.
LAYERS = (
    "errors",      # stdlib only
    "progress",    # stdlib only: k/N and ETA
    "assets",      # package data
    "pairs",       # the table of modality pairs
    "config",
    "recipes",     # named training settings (config only)
    "ops",         # pure tensor functions
    "io",          # files <-> numpy, no torch
    "weights",
    "compat",      # the authors' release
    "layers",
    "model",
    "losses",
    "metrics",
    "data",
    "samples",
    "viz",
    "infer",       # what users run
    "viewer",      # the interactive page of outputs
    "train",
    "evaluation",
    "cli",         # imported by none (but __main__)
    "__main__",
)
# The package root (``__init__``: the public surface, lazily) may import anything but the CLI;
# only the CLI imports it (for ``__version__``).
ROOT_MAY_NOT_IMPORT = {"cli", "__main__"}
ROOT_IMPORTERS = {"cli", "__main__"}

# Inside a package, each module may import only those listed before it.
INNER = {
    "infer": ("result", "procedure", "fast", "prealign", "volume", "outputs", "fuser", "demo"),
    "evaluation": ("testset", "baselines", "methods", "scoring", "report", "run"),
    "viewer": ("page", "collect", "serve"),
}

FILES = sorted(p for p in SRC.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = ("bsafusion", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in FILES}


def _imports(path: Path) -> set[str]:
    """Every internal module ``path`` imports (``from a import b``: ``a.b`` if a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "bsafusion" or name.startswith("bsafusion.")}


def _owner(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _inner(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] in INNER else None


def test_every_top_level_module_has_a_layer():
    owners = {_owner(m) for m in MODULES} - {"__init__"}
    assert owners == set(LAYERS), f"add to LAYERS: {owners - set(LAYERS)}; stale: " \
                                  f"{set(LAYERS) - owners}"
    for package, order in INNER.items():
        found = {_inner(m) for m in MODULES if _owner(m) == package} - {None}
        assert found == set(order), (package, found ^ set(order))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layering(path):
    module = _module_name(path)
    owner = _owner(module)
    for target in sorted(_imports(path)):
        dest = _owner(target)
        if owner == "__init__":
            assert dest not in ROOT_MAY_NOT_IMPORT, f"the package root imports {target}"
            continue
        if dest == "__init__":
            assert owner in ROOT_IMPORTERS, f"{module} imports the package root"
            continue
        if dest != owner:
            assert LAYERS.index(dest) < LAYERS.index(owner), \
                f"{module} imports {target}: {dest} is not above {owner} in LAYERS"
        elif owner in INNER and _inner(module) and _inner(target):
            order = INNER[owner]
            assert order.index(_inner(target)) <= order.index(_inner(module)), \
                f"{module} imports {target}, listed after it in INNER[{owner!r}]"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a self-import (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_module_import_graph_has_no_cycle():
    graph = {m: {t for t in _imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_nothing_imports_the_cli():
    for module, path in MODULES.items():
        if _owner(module) not in ("cli", "__main__"):
            assert not any(_owner(t) == "cli" for t in _imports(path)), module


def test_files_stay_small():
    big = {str(p.relative_to(SRC)): n for p in FILES
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert not big, f"files much over 400 lines: {big}"
