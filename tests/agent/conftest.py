"""Fixtures for labkit's agent: the real embedded model server, and small real HTTP servers.

The model server is started the way `labkit up` starts it (``labkit.dmr.service.start``), in its
own ``LABKIT_HOME`` on its own port, and the model is pulled over DMR's HTTP API. The scripted
servers are real HTTP servers speaking the OpenAI chat-completions stream; they let the tests
choose what "the model" answers, so the agent loop itself can be checked deterministically.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import free_port

MODEL = "ai/smollm2:135M-Q4_1"
ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for an agent subprocess: no proxy or OpenAI settings inherited from the machine."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().endswith("_PROXY") and not k.startswith("OPENAI_")}
    return {**env, **extra}


# -- the real embedded Docker Model Runner -------------------------------------------------


@dataclass
class ModelServer:
    port: int
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/engines/llama.cpp/v1"


def _service(env: dict[str, str], call: str) -> str:
    done = subprocess.run([sys.executable, "-c", f"from labkit.dmr import service; print(service.{call}())"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """`labkit up` for the model server in a private home, then `docker model pull` over HTTP."""
    port = free_port()
    env = clean_env(LABKIT_HOME=str(tmp_path_factory.mktemp("agent-labkit-home")), LABKIT_DMR_PORT=str(port))
    print(_service(env, "start"))  # returns once the server answers
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/models/create", json.dumps({"from": MODEL}), {"Accept": "application/json"})
        resp = conn.getresponse()
        lines = [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]
        conn.close()
        assert resp.status == 200 and lines and lines[-1]["type"] == "success", lines[-1:]
        yield ModelServer(port, env)
    finally:
        print(_service(env, "stop"))


# -- scripted servers: real HTTP, chosen answers ---------------------------------------------


@dataclass
class Scripted:
    """A real HTTP server; ``replies`` are streamed in order as chat-completion chunks."""

    replies: list[str] = field(default_factory=list)
    status: int = 200
    body: str = ""
    models: list[str] = field(default_factory=lambda: ["test/scripted:1M"])
    requests: list[dict] = field(default_factory=list)  # method, path, json body
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/engines/llama.cpp/v1"


def _handler(script: Scripted) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            script.requests.append({"method": self.command, "path": self.path,
                                    "json": json.loads(raw) if raw else None})
            if script.status != 200:
                return self._send(script.status, "text/plain", script.body.encode())
            if self.path.endswith("/models"):
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "docker"} for m in script.models]
                return self._send(200, "application/json", json.dumps({"object": "list", "data": data}).encode())
            if not self.path.endswith("/chat/completions") or not script.replies:
                return self._send(500, "text/plain", b"no scripted reply left")
            self._stream(script.replies.pop(0))

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _stream(self, reply: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            pieces = [reply[i:i + 7] for i in range(0, len(reply), 7)]
            try:
                for i, piece in enumerate(pieces + [""]):
                    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                             "choices": [{"index": 0, "delta": {"content": piece} if piece else {},
                                          "finish_reason": None if i < len(pieces) else "stop"}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the agent stops reading once the code block closes

        do_GET = do_POST = _answer

    return Handler


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    """Start scripted servers for one test; all are shut down after it."""
    servers: list[ThreadingHTTPServer] = []

    def start(**kwargs: object) -> Scripted:
        script = Scripted(**kwargs)  # type: ignore[arg-type]
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
        script.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return script

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


AgentRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_agent(tmp_path: Path) -> AgentRunner:
    """`python3 -m labkit.agent …` as a learner runs it, in a fresh workspace (``tmp_path``).

    ``env`` adds variables to a clean environment (no proxy or OpenAI settings from the machine).
    """

    def run(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "labkit.agent", *args],
                              env={**clean_env(**env), "PYTHONPATH": str(ROOT)},
                              cwd=tmp_path, capture_output=True, text=True, timeout=timeout)

    return run
