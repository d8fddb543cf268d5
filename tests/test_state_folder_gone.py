"""The embedded lab's daemons stop by themselves when their state folder is deleted.

`rm -rf ~/.labkit` (or a test's temporary home) used to leave the model server (~400 MB) and the
policy proxy running, with nothing that could find them again.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from tests.support import free_port, wait_for

pytestmark = pytest.mark.timeout(120)


def test_daemons_exit_when_their_state_folder_disappears(monkeypatch: pytest.MonkeyPatch) -> None:
    home = Path(tempfile.mkdtemp(prefix="lkgone-", dir="/tmp"))
    env = {"LABKIT_HOME": str(home), "LABKIT_DMR_PORT": str(free_port()), "LABKIT_MODE": "embedded"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    up = subprocess.run([sys.executable, "-m", "labkit", "up"], capture_output=True, text=True, timeout=90)
    assert up.returncode == 0, up.stdout + up.stderr
    pids = [int(p.read_text().split()[0]) for p in (home / "run").glob("*.pid")]
    assert len(pids) == 2 and all(psutil.pid_exists(pid) for pid in pids), pids
    shutil.rmtree(home)

    def running() -> list[int]:
        return [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]

    wait_for(lambda: not running(), 30, "the daemons to exit after their state folder was deleted")
    assert not home.exists()  # stopping did not recreate it
