"""Notebook 08 in the process tier (no namespaces, as on Binder): the real agents still reach the model.

In the process tier a sandbox is a plain process with the proxy variables only, and
`host.docker.internal` does not resolve there: the agents must send their requests through the
policy proxy. Notebook 08 runs alone from a fresh state (it sets up what 01–03 would have, visibly),
headless with papermill, within its bound.
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
pytestmark = [pytest.mark.notebooks, pytest.mark.timeout(420)]


def test_notebook_08_runs_in_the_process_tier(tmp_path: Path) -> None:
    from labkit.agents import install

    if install.executable("codex") is None or install.executable("claude") is None:
        pytest.skip("the pinned agents are not installed: make test installs them")
    import papermill

    port = free_port()
    env = {**os.environ, "LABKIT_HOME": tempfile.mkdtemp(prefix="labkit-test-home-"), "LABKIT_DMR_PORT": str(port),
           "LABKIT_MODE": "embedded", "LABKIT_ISOLATION": "process"}
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        t0 = time.monotonic()  # alone, from a fresh state: the notebook pulls, allows and makes what it needs
        out = tmp_path / "08.ipynb"
        papermill.execute_notebook(str(ROOT / "notebooks" / "08_agent.ipynb"), str(out), cwd=str(ROOT / "notebooks"),
                                   kernel_name="python3", progress_bar=False,
                                   parameters={"MODE": "embedded", "WORKDIR": str(tmp_path / "ws")})
        seconds = time.monotonic() - t0
    finally:
        subprocess.run([sys.executable, "-m", "labkit", "down"], env=env, capture_output=True, timeout=60)
        os.environ.clear()
        os.environ.update(saved)
    texts = ["".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in c.get("outputs", []))
             for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
    text = "\n".join(texts)
    assert "Isolation: process" in text  # the banner says which tier, and that it is weaker
    assert "→ this notebook needs the model ai/smollm2:135M-Q4_1 (notebook 01 pulls it)" in text
    assert "✓ Step 8: the agent in dmr-codex reached the model server: 1 request(s), HTTP 400" in text
    assert "✓ Step 8: the agent in dmr-claude used the local model through the proxy" in text
    assert "✓ Step 8: the agent in dmr-claude reached only the model port" in text
    assert "✓ Step 8: the deny rule cut the agent in dmr-claude off from the model" in text
    assert texts[-1].startswith("✓ Step 8: the agent in dmr-claude used the local model, a deny rule blocked it, "
                                "access is restored"), texts[-1]
    print(f"notebook 08 in the process tier: {seconds:.1f} s")
    assert seconds < 300  # two bounded agent runs of 120 s at most, and the seed's two of 20 s
