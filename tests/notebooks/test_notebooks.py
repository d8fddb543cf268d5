"""The course itself: every notebook runs headless, in order, twice, and matches its committed outputs.

* sources and notebooks are in sync (``notebooks_src/*.py`` → ``notebooks/*.ipynb``);
* committed outputs show no absolute path of the machine that produced them;
* ``pytest --nbval`` (strict) runs the whole course in order on a fresh ``LABKIT_HOME`` in embedded
  mode and passes against the committed outputs with ``sanitize.cfg``; then papermill runs every
  notebook again on the same state (re-runnable). One test, so the course executes twice, not three
  times (issue 14: the suite's time).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
sys.path.insert(0, str(ROOT / "scripts"))
import build_notebooks  # noqa: E402

pytestmark = pytest.mark.notebooks
COURSE = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _fresh_env() -> dict[str, str]:
    return {**os.environ, "LABKIT_HOME": tempfile.mkdtemp(prefix="labkit-test-home-"),
            "LABKIT_DMR_PORT": str(free_port()), "LABKIT_MODE": "embedded"}


def _down(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "labkit", "down"], env=env, capture_output=True, timeout=60)


@pytest.mark.fast  # reads the repository's files only
def test_the_course_is_complete_and_numbered():
    numbers = [int(p.name[:2]) for p in COURSE]
    assert numbers == list(range(10)), f"notebooks 00–09 expected, found {[p.name for p in COURSE]}"


@pytest.mark.fast  # reads the repository's files only
def test_sources_and_notebooks_are_in_sync():
    sources = build_notebooks.sources()
    assert [s.stem for s in sources] == [p.stem for p in COURSE]
    for src in sources:
        want = [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in build_notebooks.convert(src).cells]
        nb = nbformat.read(build_notebooks.target(src), as_version=4)
        have = [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]
        assert have == want, f"{src.name} changed: regenerate with .venv/bin/python scripts/build_notebooks.py"


@pytest.mark.fast  # reads the repository's files only
def test_every_notebook_has_a_parameters_cell_and_executed_outputs():
    for path in COURSE:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: one parameters cell expected"
        assert "MODE" in tagged[0].source
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code), f"{path.name}: commit executed outputs (build_notebooks.py)"


@pytest.mark.fast  # reads the repository's files only
def test_committed_outputs_show_no_absolute_machine_paths():
    forbidden = [str(ROOT), "/tmp/labkit-test-home-", ".labkit-build-notebooks", "/root/"]
    for path in COURSE:
        text = path.read_text()
        for needle in forbidden:
            assert needle not in text, f"{path.name} shows {needle!r}: outputs must use ~ or relative paths"


@pytest.mark.timeout(1800)
def test_course_matches_its_committed_outputs_then_runs_again(tmp_path):
    import papermill

    env = _fresh_env()
    saved = dict(os.environ)
    timings: list[tuple[str, float]] = []
    try:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-cell-timeout=600",
             "--nbval-sanitize-with", str(NOTEBOOKS / "sanitize.cfg"), "-o", "testpaths=", *map(str, COURSE)],
            cwd=NOTEBOOKS, env=env, capture_output=True, text=True, timeout=1200)
        timings.append(("nbval, in order from a fresh state", time.monotonic() - t0))
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        os.environ.update(env)
        for path in COURSE:  # again, on the state the first run left: a learner re-running a notebook
            t0 = time.monotonic()
            papermill.execute_notebook(str(path), str(tmp_path / path.name), cwd=str(NOTEBOOKS),
                                       kernel_name="python3", progress_bar=False, parameters={"MODE": "embedded"})
            timings.append((f"again: {path.stem}", time.monotonic() - t0))
    finally:
        _down(env)
        os.environ.clear()
        os.environ.update(saved)
    assert {name.removeprefix("again: ") for name, _ in timings[1:]} == {p.stem for p in COURSE}
    print("\n".join(f"{name}: {secs:.1f} s" for name, secs in timings))
