"""Every notebook also runs on its own, from a fresh state: what it needs from the earlier ones it
says in one line and sets up visibly (``lab.prepare``), never a traceback.

Each notebook runs alone under papermill on a fresh ``LABKIT_HOME`` and model port, with its own
workspace folder. 00 (the welcome, no prerequisites) and 08 (tests/notebooks/test_agent_process_tier.py
runs it alone) are left out here to keep the suite's time in check.
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
ALONE = ["01_models", "02_sandbox", "03_policy", "04_inside", "05_networking", "06_inference", "07_sdk", "09_wrapup"]
pytestmark = [pytest.mark.notebooks]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", ALONE)
def test_notebook_runs_alone_from_a_fresh_state(name: str, tmp_path: Path) -> None:
    import papermill

    source = NOTEBOOKS / f"{name}.ipynb"
    env = {"LABKIT_HOME": tempfile.mkdtemp(prefix="labkit-test-home-"), "LABKIT_DMR_PORT": str(free_port()),
           "LABKIT_MODE": "embedded"}
    saved = dict(os.environ)
    os.environ.update(env)
    params = {"MODE": "embedded"}
    if "WORKDIR" in source.read_text():
        params["WORKDIR"] = str(tmp_path / "ws")  # not made yet: the notebook makes it, or prepare() does
    t0 = time.monotonic()
    try:
        papermill.execute_notebook(str(source), str(tmp_path / source.name), cwd=str(NOTEBOOKS), kernel_name="python3",
                                   progress_bar=False, parameters=params)
    finally:
        subprocess.run([sys.executable, "-m", "labkit", "down"], env={**os.environ, **env}, capture_output=True,
                       timeout=60)
        os.environ.clear()
        os.environ.update(saved)
    out = "\n".join("".join(o.get("text", "") for o in c.get("outputs", []))
                    for c in nbformat.read(tmp_path / source.name, as_version=4).cells if c.cell_type == "code")
    assert "Traceback" not in out
    if name >= "04":  # these need what earlier notebooks made, and say so before making it
        assert "→ this notebook needs the" in out, out[:2000]
    print(f"{name} alone: {time.monotonic() - t0:.1f} s")
