"""Session-wide isolation: every test run gets its own LABKIT_HOME and model port.

Nothing a test does may touch a learner's ~/.labkit or a server on the real 12434.
The repository root goes on ``sys.path`` so every test module imports ``tests.support``.

``-m fast`` (``make test-fast``) does not import the modules that mark nothing fast: importing
them all (notebook, browser and SDK clients) would take most of the tier's minute.
"""

from __future__ import annotations

import os
import sys
import tempfile
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import free_port  # noqa: E402

FAST_MARK = "mark.fast"  # how a module marks itself or a test fast: pytestmark = pytest.mark.fast


def pytest_configure(config) -> None:  # noqa: ARG001 - pytest hook signature
    if os.environ.get("LABKIT_TEST_KEEP_ENV"):
        return
    os.environ["LABKIT_HOME"] = tempfile.mkdtemp(prefix="labkit-test-home-")
    os.environ["LABKIT_DMR_PORT"] = str(free_port())
    os.environ.pop("LABKIT_MODE", None)


@cache
def _marks_fast(path: Path) -> bool:
    """A test module, or a folder holding one, that marks something fast (read as text, not imported)."""
    files = [path] if path.is_file() else path.rglob("test_*.py")
    return any(FAST_MARK in f.read_text(encoding="utf-8", errors="replace") for f in files)


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """With exactly ``-m fast``, skip what cannot hold a fast test (None: let pytest decide as usual)."""
    if config.getoption("markexpr", "").strip() != "fast":
        return None
    if collection_path.is_dir() or (collection_path.name.startswith("test_") and collection_path.suffix == ".py"):
        return None if _marks_fast(collection_path) else True
    return None
