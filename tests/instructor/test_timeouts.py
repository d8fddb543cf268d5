"""No command can hang a room: a stuck sandbox command, or a model server that never answers,
ends at its timeout with one line that says so, and leaves nothing running.

Real pieces only: the embedded sbx (both isolation tiers) through the notebook facade
(`Lab`, `Sandbox.exec`, `PromptPanel`), and a TCP server that accepts and never answers in
place of a stuck model server.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import labkit
from labkit import widgets
from tests.support import wait_for

STOPPED = "timed out after {t:g} s and was stopped (raise timeout= if it needs longer)"


@pytest.fixture(params=["auto", "process"], ids=["auto-tier", "process-tier"])
def lab(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[labkit.Lab]:
    home = Path(tempfile.mkdtemp(prefix="lkto-", dir="/tmp"))  # short: Unix socket paths have a limit
    monkeypatch.setenv("LABKIT_HOME", str(home))
    monkeypatch.setenv("LABKIT_MODE", "embedded")
    if request.param == "process":
        monkeypatch.setenv("LABKIT_ISOLATION", "process")
    else:
        monkeypatch.delenv("LABKIT_ISOLATION", raising=False)
    lab = labkit.connect(mode="embedded", start=False, quiet=True)
    (home / "ws").mkdir()
    lab.host(["sbx", "create", "--name", "stuck", "shell", str(home / "ws")], echo=False).check()
    try:
        yield lab
    finally:
        subprocess.run([sys.executable, "-m", "labkit", "down"], capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def _sleepers(token: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", token]]


@pytest.mark.timeout(120)
def test_a_hanging_sandbox_command_stops_at_its_timeout_with_one_line(lab: labkit.Lab,
                                                                      capsys: pytest.CaptureFixture[str]):
    token = f"{random.randint(3000, 9999)}.{random.randint(100, 999)}"
    started = time.monotonic()
    result = lab.sandbox("stuck").exec(["sleep", token], timeout=1.5)
    took = time.monotonic() - started
    assert result.timed_out and result.returncode == 124
    assert result.error == STOPPED.format(t=1.5)
    assert capsys.readouterr().out.splitlines()[-1] == f"✗ {STOPPED.format(t=1.5)}"
    assert took < 10, f"the timeout fired, but stopping took {took:.1f} s"
    wait_for(lambda: not _sleepers(token), 10, "the command inside the sandbox to end with its timeout")


class SilentServer:
    """Accepts connections and never answers: a model server that is stuck."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.mark.timeout(120)
def test_the_prompt_panel_gives_up_on_a_stuck_model_server(lab: labkit.Lab):
    server = SilentServer()
    try:
        lab = labkit.Lab(lab.resolution, port=server.port)  # the same lab, its model port is the stuck one
        lab.policy.allow(lab.endpoints.rule).check()
        panel = widgets.PromptPanel(lab, model="ai/smollm2:135M-Q4_1", sandbox="stuck", timeout=2)
        started = time.monotonic()
        panel.send()
        took = time.monotonic() - started
        assert server.conns, "the request never reached the (stuck) server: the test proves nothing"
        assert panel.status == f"✗ {STOPPED.format(t=2)}"
        assert not panel.send_button.disabled  # the learner can send again
        assert took < 12
    finally:
        server.close()

