"""The widgets import the checks, never the reverse: either package loads first in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import labkit

PACKAGE = Path(labkit.__file__).parent


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _module_level_imports(path: Path) -> set[str]:
    """Absolute names of what ``path`` imports at module level (``if TYPE_CHECKING:`` blocks too)."""
    package = "labkit." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts[:-1])
    names = set()
    for node in ast.parse(path.read_text()).body:
        blocks = [node] + (node.body if isinstance(node, ast.If) else [])
        for stmt in blocks:
            if isinstance(stmt, ast.ImportFrom):
                base = stmt.module or ""
                if stmt.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - stmt.level + 1] + [base])
                names.update({base} | {f"{base}.{a.name}" for a in stmt.names})
            elif isinstance(stmt, ast.Import):
                names.update(a.name for a in stmt.names)
    return names


def test_no_checks_module_imports_the_widgets():
    for path in sorted((PACKAGE / "checks").glob("*.py")):
        assert not {n for n in _module_level_imports(path) if n.startswith("labkit.widgets")}, path.name


def test_the_checks_load_without_the_widgets():
    out = _fresh("import sys, labkit.checks, labkit.exercises\n"
                 "print(sorted(m for m in sys.modules if m.startswith('labkit.widgets')))")
    assert out == "[]"


def test_the_widgets_load_first_and_checks_checklist_is_the_widgets_builder():
    out = _fresh("import labkit.widgets\nfrom labkit import checks, widgets\n"
                 "print(checks.checklist is widgets.checklist, widgets.Checklist.__module__)")
    assert out == "True labkit.widgets.checklist"


def test_every_public_name_is_there():
    out = _fresh("from labkit import checks, widgets\n"
                 "print([n for m in (checks, widgets) for n in m.__all__ if not hasattr(m, n)])")
    assert out == "[]"
