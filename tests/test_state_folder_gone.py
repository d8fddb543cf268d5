"""The embedded lab's daemons stop by themselves when their state folder is deleted.

`rm -rf ~/.labkit` (or a test's temporary home) used to leave the model server (~400 MB) and the
policy proxy running, with nothing that could find them again.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_daemons_exit_when_their_state_folder_disappears(monkeypatch: pytest.MonkeyPatch) -> None:
    home = Path(tempfile.mkdtemp(prefix="lkgone-", dir="/tmp"))
    env = {"LABKIT_HOME": str(home), "LABKIT_DMR_PORT": str(_free_port()), "LABKIT_MODE": "embedded"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    up = subprocess.run([sys.executable, "-m", "labkit", "up"], capture_output=True, text=True, timeout=90)
    assert up.returncode == 0, up.stdout + up.stderr
    pids = [int(p.read_text().split()[0]) for p in (home / "run").glob("*.pid")]
    assert len(pids) == 2 and all(psutil.pid_exists(pid) for pid in pids), pids
    shutil.rmtree(home)
    deadline = time.monotonic() + 30
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids):
        assert time.monotonic() < deadline, "the daemons still run 30 s after their state folder was deleted"
        time.sleep(0.1)
    assert not home.exists()  # stopping did not recreate it
