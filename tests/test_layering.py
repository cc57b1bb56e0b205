"""Dependency direction inside the package (style.md §2), checked with an ast scan."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bsafusion"

# package (or module) -> internal packages it must never import
FORBIDDEN = {
    "errors": {"*"},
    "config": {"model", "layers", "ops", "io", "api", "train", "cli", "data", "metrics"},
    "ops": {"model", "layers", "io", "api", "train", "cli", "data", "metrics", "losses", "weights"},
    "io": {"model", "layers", "ops", "api", "train", "cli", "data", "metrics", "losses"},
    "layers": {"model", "io", "api", "train", "cli", "data", "metrics", "losses", "weights"},
    "compat": {"model", "layers", "io", "api", "train", "cli", "data", "metrics", "losses"},
    "weights": {"model", "layers", "ops", "api", "train", "cli", "data", "metrics", "losses"},
    "model": {"api", "train", "cli", "data", "metrics", "losses", "io", "evaluate"},
    "metrics": {"model", "api", "train", "cli", "losses", "evaluate"},
    "losses": {"model", "api", "train", "cli", "metrics", "evaluate", "io"},
    "data": {"model", "api", "train", "cli", "evaluate"},
    "train": {"api", "cli", "evaluate"},
}


def _internal_imports(path: Path) -> set[str]:
    """First component after ``bsafusion.`` of every internal import in ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "bsafusion" and len(parts) > 1:
                found.add(parts[1])
    return found


def _owner(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


FILES = sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layering(path):
    owner = _owner(path)
    forbidden = FORBIDDEN.get(owner, set())
    imported = _internal_imports(path) - {owner}
    if "*" in forbidden:
        assert not imported, f"{owner} must not import other bsafusion modules: {imported}"
    bad = imported & forbidden
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}, against the layering"


def test_nothing_imports_the_cli():
    for path in FILES:
        if _owner(path) not in ("cli", "__main__"):
            assert "cli" not in _internal_imports(path), path


def test_files_stay_small():
    big = {str(p.relative_to(SRC)): n for p in FILES
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert not big, f"files much over 400 lines: {big}"
