"""llama.cpp runs in its own process: when it dies, the model server says so and carries on.

Real crashes: the engine process of the running server is killed with SIGKILL (what the OOM
killer sends) and SIGSEGV (what an unsupported instruction or a llama.cpp bug gives) while it
generates. The client gets DMR's error, the front keeps answering, `docker model status` shows
the backend's `Error`, and the next request starts a fresh engine and succeeds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import threading
import time

import httpx
import pytest

from labkit._core import paths
from labkit.dmr import cli
from tests.support import wait_for

from .conftest import REF, Session

LONG = {"model": REF, "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
        "max_tokens": 3000, "temperature": 0.9, "seed": 3}
SHORT = {"model": REF, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 4, "temperature": 0}


def _backend_status(http: httpx.Client) -> str:
    return str(http.get("/engines/status").json()["llama.cpp"])


def engine_pid(http: httpx.Client) -> int:
    """The engine's pid, as `/engines/status` reports it (starting one with a short request if needed)."""
    if "engine pid" not in _backend_status(http):
        assert http.post("/engines/v1/chat/completions", json=SHORT).status_code == 200
    found = re.search(r"engine pid (\d+)", _backend_status(http))
    assert found, _backend_status(http)
    return int(found[1])


def _recover(http: httpx.Client, old_pid: int) -> None:
    """The front still answers, says Error until the next request, which starts a fresh engine."""
    assert http.get("/engines/v1/models").status_code == 200  # routes and store are up
    status = _backend_status(http)
    assert status.startswith("Error: llama.cpp terminated unexpectedly: llama.cpp exit status: signal: "), status
    assert http.get("/engines/ps").json() == []  # the crashed runner is gone, as DMR evicts defunct runners
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["status"]) == 0
    row = next(line for line in out.getvalue().splitlines() if line.startswith("llama.cpp"))
    assert row.split()[1] == "Error" and "terminated unexpectedly" in row, out.getvalue()
    again = http.post("/engines/v1/chat/completions", json=SHORT)
    assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"]
    assert _backend_status(http).startswith("Running: ")
    assert engine_pid(http) != old_pid


@pytest.mark.timeout(180)
def test_sigkill_mid_stream_is_an_error_line_and_the_next_request_works(http: httpx.Client) -> None:
    pid = engine_pid(http)
    lines: list[str] = []
    with http.stream("POST", "/engines/v1/chat/completions", json={**LONG, "stream": True}) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            lines.append(line)
            if line.startswith("data: {") and sum(x.startswith("data: {") for x in lines) == 3:
                os.kill(pid, signal.SIGKILL)
    errors = [x for x in lines if x.startswith("error: ")]
    assert len(errors) == 1, lines[-5:]
    message = json.loads(errors[0][len("error: "):])["error"]["message"]
    assert message == "llama.cpp terminated unexpectedly: llama.cpp exit status: signal: killed"
    assert not [x for x in lines[lines.index(errors[0]):] if x.startswith("data: {")]  # nothing after it
    log = (paths.state_dir("logs") / "dmr.log").read_text()
    assert f"engine process {pid} crashed (SIGKILL)" in log
    _recover(http, pid)


@pytest.mark.timeout(180)
def test_sigsegv_during_a_request_is_dmrs_500_and_the_next_request_works(http: httpx.Client) -> None:
    pid = engine_pid(http)
    answer: list[httpx.Response] = []
    asking = threading.Thread(target=lambda: answer.append(http.post("/engines/v1/chat/completions", json=LONG)))
    asking.start()
    wait_for(lambda: any(r.get("in_use") for r in http.get("/engines/ps").json()), 60, "the engine to generate")
    os.kill(pid, signal.SIGSEGV)
    asking.join(timeout=60)
    resp = answer[0]
    assert resp.status_code == 500
    assert resp.headers["content-type"] == "application/json; charset=utf-8"
    assert resp.json() == {"type": "error", "code": None, "param": None, "sequence_number": 1,
                           "message": "llama.cpp terminated unexpectedly: llama.cpp exit status: signal: "
                                      "segmentation fault"}
    log = (paths.state_dir("logs") / "dmr.log").read_text()
    assert f"engine process {pid} crashed (SIGSEGV)" in log and "labkit doctor" in log
    _recover(http, pid)


@pytest.mark.timeout(180)
def test_requests_waiting_behind_a_crash_go_to_the_fresh_engine(http: httpx.Client, pulled: Session) -> None:
    pid = engine_pid(http)
    results: dict[str, int] = {}

    def ask(name: str, body: dict) -> None:
        with httpx.Client(base_url=pulled.base_url, timeout=120) as own:
            results[name] = own.post("/engines/v1/chat/completions", json=body).status_code

    running = threading.Thread(target=ask, args=("running", LONG))
    running.start()
    wait_for(lambda: any(r.get("in_use") for r in http.get("/engines/ps").json()), 60,
             "the first request to be generating")
    waiting = threading.Thread(target=ask, args=("waiting", SHORT))
    waiting.start()
    time.sleep(0.2)  # let it reach the queue (nothing to poll: queued jobs are not visible)
    os.kill(pid, signal.SIGKILL)
    running.join(timeout=60)
    waiting.join(timeout=60)
    assert results == {"running": 500, "waiting": 200}
