"""`labkit up | down | status` for the model server: idempotent, explains a taken port, keeps the store."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from labkit._core.daemon import ServiceError
from labkit.dmr import service
from tests.support import free_port

from .conftest import REF, TAG, Session


def test_status_and_idempotent_start(pulled: Session) -> None:
    running, line = service.status()
    assert running
    assert pulled.base_url in line and "pid " in line and "dmr.log" in line
    assert service.start().startswith(f"model server: already running at {pulled.base_url}")


def test_store_survives_down_and_up(pulled: Session) -> None:
    assert service.stop().startswith("model server: stopped")
    assert service.stop() == "model server: not running"
    running, line = service.status()
    assert not running and "labkit up" in line
    with pytest.raises(httpx.ConnectError):
        httpx.get(pulled.base_url + "/models")
    t0 = time.perf_counter()
    line = service.start()
    assert line.startswith(f"model server: {pulled.base_url} (pid ")
    assert f"{REF} warmed up in" in line or "docker.io/" in line and "warmed up in" in line, line
    body = {"model": REF, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "temperature": 0}
    resp = httpx.post(pulled.base_url + "/engines/v1/chat/completions", json=body, timeout=60)
    cold = time.perf_counter() - t0
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"]
    assert [m["tags"] for m in httpx.get(pulled.base_url + "/models").json()] == [[TAG]]
    # The goal is 3 s (bench/bench_dmr.py measures it); this bound only catches a regression.
    assert cold < 8, f"up → first answer took {cold:.1f} s"


@pytest.fixture
def other_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A second labkit home and port, so the session's server is not the one asked."""
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    port = free_port()
    monkeypatch.setenv("LABKIT_DMR_PORT", str(port))
    yield port


def test_port_held_by_another_process(other_home: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", other_home))
        sock.listen()
        with pytest.raises(ServiceError) as caught:
            service.start()
    message = str(caught.value)
    assert f"port {other_home} is taken by pid " in message and "LABKIT_DMR_PORT" in message


class _ForeignDmr(http.server.BaseHTTPRequestHandler):
    """Stands in for a real Docker Model Runner on the port: it answers as DMR, without our header."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b"Docker Model Runner is running" if self.path == "/" else b'{"object":"list","data":[]}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_port_held_by_a_real_dmr_means_live_mode(other_home: int) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", other_home), _ForeignDmr)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(ServiceError) as caught:
            service.start()
    finally:
        server.shutdown()
        server.server_close()
    assert "real Docker Model Runner" in str(caught.value) and "LABKIT_MODE=live" in str(caught.value)
