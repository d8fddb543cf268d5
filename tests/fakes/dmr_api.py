"""The fake `docker`'s HTTP side: Docker Model Runner's API, answering from the fake model store.

The fake `docker model pull` writes the store (``FAKE_STATE_DIR/docker.json``); this server
reads it on every request, so what a cell pulled is what ``GET /models`` lists next. Routes and
bodies are DMR's (reference §2.3–2.5) as labkit's embedded server gives them: ``GET /models``,
``GET /engines[/llama.cpp]/v1/models[/NAME]``, ``POST …/v1/chat/completions`` (a fixed reply:
there is no model), Go's plain-text errors otherwise. A loopback server in a thread, so the fake
`sbx exec` (FAKE_SBX_GATEWAY) and curl reach it like the real one. Standard library only.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPLY = "sbx to DMR works"
V1 = re.compile(r"^/engines(?:/[^/]+)?/v1(/.*)$")  # /engines/v1/… and /engines/llama.cpp/v1/…


def canonical(ref: str) -> str:
    """`[registry/][org/]name[:tag]` → `ai/name:tag` (default org `ai`, tag `latest`) [reference §2.1]."""
    for prefix in ("index.docker.io/", "docker.io/"):
        ref = ref.removeprefix(prefix)
    name, _, tag = ref.partition(":")
    if "/" not in name:
        name = f"ai/{name}"
    return f"{name.lower()}:{tag or 'latest'}"


def model_not_found(ref: str) -> str:
    """DMR's body for a model that is not in the store (Go's %q quoting)."""
    return f"error while getting model: get model '{json.dumps(ref)}': model not found"


class FakeDmrApi:
    """DMR's HTTP API on 127.0.0.1:``port`` over the fake store in ``state_dir``; ``requests`` lists
    (method, path) of what it was asked."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def models(self) -> list[dict[str, Any]]:
        path = self.state_dir / "docker.json"
        return json.loads(path.read_text())["models"] if path.exists() else []

    def find(self, ref: str) -> dict[str, Any] | None:
        want = canonical(ref)
        return next((m for m in self.models() if want in {canonical(t) for t in m.get("tags", [])}), None)

    @staticmethod
    def openai(model: dict[str, Any]) -> dict[str, Any]:
        tags = model.get("tags") or [model["id"]]
        return {"id": tags[0], "object": "model", "created": model["created"], "owned_by": "docker"}

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, str, str]:
        """(status, content type, body) for one request."""
        self.requests.append((method, path))
        if method == "GET" and path == "/models":
            return 200, "application/json", json.dumps(self.models())
        v1 = V1.match(path)
        route = v1[1] if v1 else ""
        if method == "GET" and route == "/models":
            return 200, "application/json", json.dumps({"object": "list",
                                                        "data": [self.openai(m) for m in self.models()]})
        if method == "GET" and route.startswith("/models/"):
            name = route.removeprefix("/models/")
            model = self.find(name)
            if model is None:
                return 404, "text/plain; charset=utf-8", model_not_found(name) + "\n"
            return 200, "application/json", json.dumps(self.openai(model))
        if method == "POST" and route == "/chat/completions":
            name = json.loads(body or b"{}").get("model", "")
            model = self.find(name) if name else None
            if model is None:
                return 404, "text/plain; charset=utf-8", model_not_found(name) + "\n"
            return 200, "application/json", json.dumps({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}})
        return 404, "text/plain; charset=utf-8", "404 page not found\n"


def _handler(api: FakeDmrApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, ctype, text = api.answer(self.command, self.path.partition("?")[0],
                                             self.rfile.read(length) if length else b"")
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

    return Handler
