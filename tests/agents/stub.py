"""A recording stub model server: a measurement tool for the tests, never part of the course.

It records every request (method, path, headers, JSON body) and answers the smallest valid
stream each agent accepts, so a real agent finishes its turn and the test can read exactly
what the agent sent and where. Responses API: one ``response.output_item.done`` message and
``response.completed`` (docs/codex-local.md §3.3). Anthropic Messages: the event sequence of a
one-block text answer. Anything else gets a 404, and, used as ``HTTPS_PROXY``, every ``CONNECT`` a 502: both are
recorded, so a test also sees where else an agent tried to go.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = "hi"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any = None


@dataclass
class Recorder:
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, req: Request) -> None:
        with self.lock:
            self.requests.append(req)

    def posts(self, suffix: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST" and r.path.split("?")[0].endswith(suffix)]


def _sse(events: list[dict[str, Any]], named: bool) -> bytes:
    out = []
    for ev in events:
        head = f"event: {ev['type']}\n" if named else ""
        out.append(f"{head}data: {json.dumps(ev)}\n\n")
    return "".join(out).encode()


def responses_stream() -> bytes:
    item = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": ANSWER, "annotations": []}]}
    return _sse([{"type": "response.output_item.done", "output_index": 0, "item": item},
                 {"type": "response.completed", "response": {"id": "resp_1", "status": "completed", "output": [item],
                                                             "usage": {"input_tokens": 1, "output_tokens": 1,
                                                                       "total_tokens": 2}}}], named=False)


def messages_stream(model: str) -> bytes:
    msg = {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
           "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 0}}
    return _sse([
        {"type": "message_start", "message": msg},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ANSWER}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 1}},
        {"type": "message_stop"},
    ], named=True)


def message_json(model: str) -> bytes:
    return json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                       "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn",
                       "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}).encode()


def serve(recorder: Recorder) -> ThreadingHTTPServer:
    """Start the stub on a free 127.0.0.1 port in a daemon thread; ``shutdown()`` stops it."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _record(self) -> Any:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            recorder.add(Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            return body

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._record()
            self._send(404, b'{"error":"not found"}', "application/json")

        do_HEAD = do_GET  # noqa: N815

        def do_CONNECT(self) -> None:  # noqa: N802 - the stub doubles as a proxy that records and refuses
            self._record()
            self._send(502, b"", "text/plain")

        def do_POST(self) -> None:  # noqa: N802
            body = self._record()
            path = self.path.split("?")[0]
            model = body.get("model", "m") if isinstance(body, dict) else "m"
            if path.endswith("/responses"):
                self._send(200, responses_stream(), "text/event-stream")
            elif path.endswith("/messages/count_tokens"):
                self._send(200, b'{"input_tokens": 1}', "application/json")
            elif path.endswith("/messages"):
                if isinstance(body, dict) and body.get("stream"):
                    self._send(200, messages_stream(model), "text/event-stream")
                else:
                    self._send(200, message_json(model), "application/json")
            else:
                self._send(404, b'{"error":"not found"}', "application/json")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
