"""When the engine or the whole model server dies, every layer says what died, how, and what to run.

Real deaths: the engine process is killed with SIGSEGV under a request, and the server process
itself with SIGKILL. Then `labkit status`, `labkit up`, the model API client (what `lab.chat`
and the prompt panel use) and `docker model status` are read as a learner would see them.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading

import httpx
import pytest

from labkit.commands import up as lab_services
from labkit.dmr import cli, service
from labkit.errors import ToolError
from labkit.tools.model_api import ModelApi
from tests.support import wait_for

from .conftest import REF, Session
from .test_engine_crash import engine_pid

LONG = {"model": REF, "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
        "max_tokens": 3000, "temperature": 0.9, "seed": 5}


def _api(base_url: str) -> ModelApi:
    return ModelApi(base_url, timeout=60, explain=service.trouble)


def _status_line() -> tuple[bool, str]:
    return service.status()


def _generating(http: httpx.Client) -> bool:
    return any(r.get("in_use") for r in http.get("/engines/ps").json())


def _crash_engine_under_a_request(http: httpx.Client) -> list[httpx.Response]:
    pid = engine_pid(http)
    answer: list[httpx.Response] = []
    asking = threading.Thread(target=lambda: answer.append(http.post("/engines/v1/chat/completions", json=LONG)))
    asking.start()
    wait_for(lambda: _generating(http), 60, "the engine to generate")
    os.kill(pid, signal.SIGSEGV)
    asking.join(timeout=60)
    return answer


@pytest.mark.timeout(180)
def test_engine_crash_is_named_by_status_up_and_the_client(http: httpx.Client, pulled: Session) -> None:
    assert _crash_engine_under_a_request(http)[0].status_code == 500
    running, line = _status_line()
    assert not running
    assert "llama.cpp engine crashed (signal: segmentation fault; log " in line and "dmr.log" in line, line
    assert "labkit doctor" in line
    up = service.start()
    assert up.startswith("model server: already running") and "engine crashed" in up, up
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert lab_services.status_main([]) == 1
    assert "✗ model server:" in out.getvalue() and "segmentation fault" in out.getvalue()

    # the next request through the client works again, and status is healthy again
    api = _api(pulled.base_url)
    assert api.chat(REF, "Name a colour.", max_tokens=3, temperature=0).content
    assert _status_line()[0]


@pytest.mark.timeout(180)
def test_the_client_names_a_crash_under_its_own_request(http: httpx.Client, pulled: Session) -> None:
    api = _api(pulled.base_url)
    errors: list[ToolError] = []

    def ask() -> None:
        try:
            api.chat(REF, LONG["messages"], max_tokens=3000, temperature=0.9, seed=6)
        except ToolError as err:
            errors.append(err)

    pid = engine_pid(http)
    asking = threading.Thread(target=ask)
    asking.start()
    wait_for(lambda: _generating(http), 60, "the engine to generate")
    os.kill(pid, signal.SIGKILL)
    asking.join(timeout=60)
    assert len(errors) == 1
    err = errors[0]
    assert err.kind == "engine_crashed"
    assert err.message == ("the model's llama.cpp engine crashed while answering (signal: killed); "
                           "the model server is still up")
    assert str(err).count("\n") == 1  # what happened, then the fix


@pytest.mark.timeout(180)
def test_a_dead_server_is_told_apart_from_a_stopped_one(pulled: Session) -> None:
    svc = service.service()
    pid = svc.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: svc.pid() is None, 60, "the model server to be gone")
    running, line = _status_line()
    assert not running
    assert line.startswith("model server: the embedded model server died without `labkit down`"), line
    assert "labkit up" in line and "dmr.log" in line

    with pytest.raises(ToolError) as caught:
        _api(pulled.base_url).chat(REF, "Hi", max_tokens=1)
    assert caught.value.kind == "dmr_not_running" and "died without `labkit down`" in caught.value.message
    assert caught.value.fix == "start it again: labkit up"

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["status"]) == 1
    assert "died without `labkit down`" in out.getvalue()

    again = service.start()  # what the learner types next
    assert "started again: it had died without `labkit down`" in again, again
    assert _status_line()[0]
    service.stop()
    assert _status_line()[1].startswith("model server: not running (start it: labkit up)")  # stopped, not dead
