"""`docker model requests` and `docker model configure` in embedded mode, against the real server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest

from labkit.dmr import cli

from .conftest import REF, Session
from .test_cli import run
from .test_requestlog import chat, wait_for

FOLLOW_BANNER = "Connected to request stream. Press Ctrl+C to stop."


# -- requests -------------------------------------------------------------------------------------


def test_requests_prints_the_log_as_json(http: httpx.Client, capsys: pytest.CaptureFixture[str]) -> None:
    marker = uuid.uuid4().hex
    assert chat(http, marker).status_code == 200
    wait_for(http, marker)
    code, out, _ = run(capsys, "requests", "--model", REF)
    (entry,) = json.loads(out)
    assert code == 0 and entry["records"] and marker in entry["records"][-1]["request"]
    assert out == http.get("/engines/requests", params={"model": REF}).text  # printed as the server sent it
    code, out, _ = run(capsys, "requests")
    assert code == 0 and any(e["model"] == entry["model"] for e in json.loads(out))
    code, out, _ = run(capsys, "requests", "--model", "ai/never-pulled")
    assert code == 0 and json.loads(out) == []


def test_include_existing_needs_follow(pulled: Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "requests", "--include-existing")
    assert code == 1 and out == "" and err == "--include-existing can only be used with --follow\n"


def _readline_with(proc: subprocess.Popen[str], needle: str) -> list[str]:
    """Lines of the follower's stdout up to the first that holds ``needle`` (pytest-timeout bounds it)."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line.rstrip("\n"))
        if needle in line:
            return seen
    raise AssertionError(f"stream ended before {needle!r}: {seen}")


def test_follow_prints_new_requests_and_stops_on_ctrl_c(pulled: Session, http: httpx.Client) -> None:
    before = uuid.uuid4().hex
    assert chat(http, before).status_code == 200
    wait_for(http, before)
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "model", "requests", "-f", "--include-existing",
                             "--model", REF], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert _readline_with(proc, FOLLOW_BANNER) == [FOLLOW_BANNER]
        assert json.loads(_readline_with(proc, before)[-1])[0]["count"] == 1  # an existing record
        after = uuid.uuid4().hex
        assert chat(http, after).status_code == 200
        (entry,) = json.loads(_readline_with(proc, after)[-1])
        assert entry["model"] == REF and entry["records"][0]["status_code"] == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err


@pytest.fixture
def one_event_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A server that sends one SSE event and hangs up: what the CLI sees when DMR stops."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                         b'event: connected\ndata: {"status": "connected"}\n\n'
                         b'event: new_request\ndata: [{"count":1}]\n\nevent: other\ndata: {"skip":1}\n\n')

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setenv("LABKIT_DMR_PORT", str(port))
    yield port
    thread.join(5)
    listener.close()


def test_follow_ends_when_the_server_closes(one_event_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "requests", "-f")
    assert code == 0 and out.splitlines() == [FOLLOW_BANNER, '[{"count":1}]', "Stream closed by server."]


# -- configure ------------------------------------------------------------------------------------


def test_configure_is_hidden_and_checks_its_arguments(pulled: Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "requests" in out and "configure" not in out and "config " not in out
    for command in ("configure", "config"):
        code, out, err = run(capsys, command, "--context-size", "lots", REF)
        assert (code, out) == (1, "") and err.splitlines() == [
            'invalid argument "lots" for "--context-size" flag: strconv.ParseInt: parsing "lots": invalid syntax']
    code, _, err = run(capsys, "configure", "--context-size=99999999999", REF)
    assert code == 1 and err.strip().endswith('parsing "99999999999": value out of range')
    code, _, err = run(capsys, "configure", "--context-size", "0", REF)
    assert code == 1 and len(err.splitlines()) == 1 and "above 0" in err
    code, _, err = run(capsys, "configure", "--context-size", "2048", "ai/never-pulled")
    assert code == 1 and err.splitlines() == [
        "Failed to configure ai/never-pulled: model not found (see the pulled models with: docker model ls)"]
    code, _, err = run(capsys, "configure", "a", "b")
    assert code == 1 and err.startswith("Exactly one model must be specified, got 2: [a b]\n")
    code, _, err = run(capsys, "configure", "show", "a", "b")
    assert code == 1 and err == "accepts at most 1 arg(s), received 2\n"


def test_configure_round_trip(http: httpx.Client, capsys: pytest.CaptureFixture[str]) -> None:
    """Needs the configure routes (another module): set a context size, then `configure show` has it."""
    try:
        code, out, err = run(capsys, "configure", "--context-size", "2048", REF)
        assert (code, out, err) == (0, "", "")  # DMR's configure says nothing on success
        code, out, err = run(capsys, "configure", "show", REF)
        assert code == 0, err
        (entry,) = json.loads(out)
        assert entry["ModelID"] == http.get(f"/models/{REF}").json()["id"] and entry["Backend"] == "llama.cpp"
        assert entry["Config"]["context-size"] == 2048 and entry["Mode"] == "completion"
        assert out.startswith('[\n  {\n    "Backend": ')  # json.MarshalIndent with two spaces
        marker = uuid.uuid4().hex
        assert chat(http, marker).status_code == 200
        wait_for(http, marker)
        (logged,) = http.get("/engines/requests", params={"model": REF}).json()
        assert logged["config"] == {"context-size": 2048}  # the request log shows the model's settings
    finally:
        assert cli.main(["configure", REF]) == 0  # back to the default context for the other tests
        capsys.readouterr()
