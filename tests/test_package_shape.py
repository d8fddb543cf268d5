"""The package's shape: no import cycle between labkit's modules, and the README's layout is complete."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import labkit

pytestmark = pytest.mark.fast
PACKAGE = Path(labkit.__file__).parent
ROOT = PACKAGE.parent


def _module_name(path: Path) -> str:
    parts = ["labkit", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _runs_at_import(node: ast.stmt) -> list[ast.stmt]:
    """Statements executed when the module loads: the body, and ``if`` blocks other than TYPE_CHECKING."""
    if isinstance(node, ast.If):
        if "TYPE_CHECKING" in ast.unparse(node.test):
            return list(node.orelse)
        return [s for child in node.body + node.orelse for s in _runs_at_import(child)]
    if isinstance(node, ast.Try):
        return [s for child in node.body for s in _runs_at_import(child)]
    return [node]


def _imports(name: str) -> set[str]:
    """The labkit modules ``name`` imports while it loads (function-level imports are lazy: left out)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        for stmt in _runs_at_import(node):
            if isinstance(stmt, ast.ImportFrom):
                base = stmt.module or ""
                if stmt.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - stmt.level + 1] + ([base] if base else []))
                for alias in stmt.names:
                    target = f"{base}.{alias.name}"
                    found.add(target if target in MODULES else base)
            elif isinstance(stmt, ast.Import):
                found.update(a.name for a in stmt.names)
    return {m for m in found if m in MODULES and m != name}


def _cycle() -> list[str]:
    graph = {name: _imports(name) for name in MODULES}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return []

    for name in sorted(graph):
        if name not in state and (found := visit(name)):
            return found
    return []


def test_no_module_of_labkit_imports_itself_back_through_others() -> None:
    assert _cycle() == [], " → ".join(_cycle())


def test_the_readmes_layout_names_every_top_level_entry_of_the_package() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    layout = layout[: layout.index("```", layout.index("```") + 3)]
    entries = {p.name + ("/" if p.is_dir() else "") for p in PACKAGE.iterdir()
               if p.name not in {"__pycache__", "__init__.py", "__main__.py"} and not p.name.endswith(".egg-info")}
    missing = sorted(e for e in entries if f"  {e}" not in layout)
    assert missing == []
