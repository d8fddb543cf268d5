"""The whole course, headless: how long notebooks 00–09 take in embedded mode (goal ≤ 120 s).

Run: .venv/bin/python bench/bench_course.py. Uses a fresh LABKIT_HOME and a free model port,
starts nothing beforehand (cold: the first notebook starts the lab and pulls the model), and
prints one line per notebook and the total. Not part of the test suite.
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
GOAL_SECONDS = 120.0

from tests.support import free_port  # noqa: E402


def main() -> int:
    import papermill

    home = tempfile.mkdtemp(prefix="labkit-bench-course-")
    os.environ.update({"LABKIT_HOME": home, "LABKIT_DMR_PORT": str(free_port()), "LABKIT_MODE": "embedded"})
    out_dir = Path(tempfile.mkdtemp(prefix="labkit-bench-out-"))
    total = 0.0
    try:
        for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            t0 = time.monotonic()
            papermill.execute_notebook(str(nb), str(out_dir / nb.name), cwd=str(ROOT / "notebooks"),
                                       kernel_name="python3", progress_bar=False, log_output=False)
            took = time.monotonic() - t0
            total += took
            print(f"{nb.stem:<16} {took:6.1f} s", flush=True)
    finally:
        subprocess.run([sys.executable, "-m", "labkit", "down"], capture_output=True, timeout=60)
    verdict = "within" if total <= GOAL_SECONDS else "over"
    ratio = total / GOAL_SECONDS
    print(f"{'whole course':<16} {total:6.1f} s  ({verdict} the {GOAL_SECONDS:.0f} s goal; ratio {ratio:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
