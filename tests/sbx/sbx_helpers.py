"""Helpers of the embedded-sbx tests: polling, a model-like HTTP server, the CLI, audit marks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from labkit.sbx import audit, runtime
from tests.support import wait_for

HOST_SECRET = "sk-HOST-SECRET-do-not-leak"


def audit_since(mark: int) -> list[audit.AuditRecord]:
    return audit.read()[mark:]


def audit_mark() -> int:
    return len(audit.read())


def audit_wait(mark: int, count: int, timeout: float = 10.0) -> list[audit.AuditRecord]:
    """The records written since ``mark``, once there are at least ``count`` of them."""
    def enough() -> list[audit.AuditRecord] | None:
        records = audit_since(mark)
        return records if len(records) >= count else None

    return wait_for(enough, timeout, f"{count} audit records")


class Upstream:
    """A threaded HTTP server: /hello, /v1/models, /sse?n=&gap=, POST /echo; counts hits per path."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.hits: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                outer.hits[path] += 1
                if path == "/v1/models":
                    self._send(200, json.dumps({"object": "list", "data": [{"id": "ai/test-model"}]}).encode(),
                               "application/json")
                elif path == "/sse":
                    params = dict(p.split("=") for p in query.split("&") if "=" in p)
                    self._sse(int(params.get("n", 5)), float(params.get("gap", 0.1)))
                else:
                    self._send(200, b"hello from the host\n")

            def do_POST(self) -> None:
                outer.hits[self.path] += 1
                length = int(self.headers.get("Content-Length", 0))
                self._send(200, self.rfile.read(length), "application/octet-stream")

            def _sse(self, n: int, gap: float) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(n):
                    if i:
                        time.sleep(gap)  # the server's pacing, not a test waiting
                    data = f"data: {i} {time.monotonic():.6f}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sbx(*args: str, input: str | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The embedded `sbx` CLI as a learner runs it (a real subprocess)."""
    return subprocess.run([sys.executable, "-m", "labkit.sbx.cli", *args], capture_output=True, text=True,
                          input=input, timeout=timeout, env={**os.environ, **(env or {})},
                          stdin=None if input is not None else subprocess.DEVNULL)


def run_in(name: str, script: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``sh -c script`` in a sandbox through the Python API; output captured."""
    kwargs.setdefault("timeout", 60)
    return runtime.exec_command(name, ["sh", "-c", script], **kwargs)
