"""The whole course, headless: how long notebooks 00–09 take in embedded mode (goal ≤ 60 s).

Run: .venv/bin/python bench/bench_course.py. Uses a fresh LABKIT_HOME and a free model port,
starts nothing beforehand (cold: the first notebook starts the lab and pulls the model), and
prints one line per notebook: its time, the part spent in the real agents' bounded runs (08's
cells tagged ``agent-run``, reported apart: the goal excludes them) and the kernel's start and
shutdown (the notebook's time minus its cells'). Not part of the test suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GOAL_SECONDS = 60.0

from tests.support import free_port  # noqa: E402


def _cell_seconds(path: Path) -> tuple[float, float]:
    """(all cells, the agent-run cells) from papermill's per-cell durations."""
    import nbformat

    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    duration = [(c.metadata.get("papermill", {}).get("duration") or 0.0, "agent-run" in c.metadata.get("tags", []))
                for c in cells]
    return sum(d for d, _ in duration), sum(d for d, agent in duration if agent)


def main() -> int:
    import papermill

    home = tempfile.mkdtemp(prefix="labkit-bench-course-")
    os.environ.update({"LABKIT_HOME": home, "LABKIT_DMR_PORT": str(free_port()), "LABKIT_MODE": "embedded"})
    out_dir = Path(tempfile.mkdtemp(prefix="labkit-bench-out-"))
    total = agents = 0.0
    print(f"{'notebook':<16} {'time':>7} {'agents':>7} {'kernel':>7}")
    try:
        for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            t0 = time.monotonic()
            papermill.execute_notebook(str(nb), str(out_dir / nb.name), cwd=str(ROOT / "notebooks"),
                                       kernel_name="python3", progress_bar=False, log_output=False)
            took = time.monotonic() - t0
            cells, agent = _cell_seconds(out_dir / nb.name)
            total, agents = total + took, agents + agent
            print(f"{nb.stem:<16} {took:6.1f}s {agent:6.1f}s {took - cells:6.1f}s", flush=True)
    finally:
        subprocess.run([sys.executable, "-m", "labkit", "down"], capture_output=True, timeout=60)
    course = total - agents
    verdict = "within" if course <= GOAL_SECONDS else "over"
    print(f"{'whole course':<16} {total:6.1f}s {agents:6.1f}s")
    print(f"without the agents' runs: {course:.1f} s ({verdict} the {GOAL_SECONDS:.0f} s goal; "
          f"ratio {course / GOAL_SECONDS:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
