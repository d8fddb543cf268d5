"""`make lab`'s JupyterLab, for real: its terminals have `labkit` on PATH, and stopping it stops the lab.

`scripts/lab.sh` is started as `make lab` starts it (own state folder, free ports, a token); a
JupyterLab terminal is opened through the terminals REST API and driven over its websocket, as
the browser does, running the README's `labkit shell -c "sbx ls"`. Then JupyterLab is stopped,
and the embedded lab must stop with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
import websocket

from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(240)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _terminal_output(ws: websocket.WebSocket, marker: str, timeout: float) -> str:
    """What the terminal printed until ``marker`` appears (the terminado protocol: ["stdout", text])."""
    text = ""
    deadline = time.monotonic() + timeout
    while marker not in text:
        assert time.monotonic() < deadline, f"no {marker!r} in the terminal:\n{text[-2000:]}"
        ws.settimeout(max(deadline - time.monotonic(), 0.1))
        message = json.loads(ws.recv())
        if message[0] == "stdout":
            text += message[1]
    return text


def test_lab_terminal_has_labkit_and_ctrl_c_stops_the_lab(tmp_path: Path) -> None:
    port, token = free_port(), "course-test-token"
    home = tmp_path / "labkit-home"
    env = {**os.environ, "LABKIT_HOME": str(home), "LABKIT_DMR_PORT": str(free_port()),
           "HOME": str(tmp_path), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "PATH": "/usr/local/bin:/usr/bin:/bin",  # as a fresh login: the script must add .venv/bin itself
           "LABKIT_WORK_DIR": str(tmp_path / "work")}  # the learner's copies, outside the checkout
    log = open(tmp_path / "lab.log", "w")
    lab = subprocess.Popen([str(ROOT / "scripts" / "lab.sh"), f"--port={port}", f"--ServerApp.token={token}",
                            "--ServerApp.port_retries=0"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/api/status?token={token}"), 180, "JupyterLab")
        listed = httpx.get(f"{base}/api/contents?token={token}", timeout=10).json()["content"]
        assert {"00_welcome.ipynb", "09_wrapup.ipynb", "INSTRUCTOR.md"} <= {item["name"] for item in listed}
        copy, tracked = tmp_path / "work" / "00_welcome.ipynb", ROOT / "notebooks" / "00_welcome.ipynb"
        assert copy.read_bytes() == tracked.read_bytes()  # a copy: running it leaves notebooks/ untouched
        name = httpx.post(f"{base}/api/terminals?token={token}", timeout=10).json()["name"]
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/terminals/websocket/{name}?token={token}",
                                         timeout=30)
        # the marker is computed, so the echo of the typed line does not end the reading early
        ws.send(json.dumps(["stdin", "command -v labkit; labkit shell -c 'sbx ls'; echo END-OF-$((6*7))\r"]))
        out = _terminal_output(ws, "END-OF-42", 120)
        ws.close()
        assert "command not found" not in out, out
        assert f"{ROOT}/.venv/bin/labkit" in out, out
        assert "No sandboxes found." in out or "SANDBOX" in out, out
        server = next(p for p in psutil.Process(lab.pid).children(recursive=True) if "jupyter" in " ".join(p.cmdline()))
        model_server = (home / "run" / "dmr.pid").read_text().split()[0]
        assert psutil.pid_exists(int(model_server))
        server.send_signal(signal.SIGINT)  # Ctrl+C: without a terminal to confirm on, JupyterLab stops
        try:
            server.wait(30)
        except psutil.TimeoutExpired:  # older servers ask to confirm a first Ctrl+C: the second one stops
            server.send_signal(signal.SIGINT)
        assert lab.wait(60) == 0 or lab.returncode in (130, -2)
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGKILL)
        log.close()
        subprocess.run([str(ROOT / ".venv" / "bin" / "labkit"), "down"], env=env, capture_output=True, timeout=60)
    said = (tmp_path / "lab.log").read_text()
    assert "model server: stopped" in said and "policy proxy: stopped" in said, said[-2000:]
    wait_for(lambda: not psutil.pid_exists(int(model_server)), 30, "the model server to exit")
