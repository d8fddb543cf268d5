"""Responses shaped like DMR's (Go ``net/http``) and llama-server's, and job-backed streams.

DMR's own errors are Go ``http.Error``: ``text/plain; charset=utf-8``, ``nosniff``, body plus
a newline, never OpenAI JSON (docs/sbx-dmr-facts.md §2.5). Inference answers are llama-server's JSON and
SSE, which DMR proxies unchanged (§2.6). The two job responses below watch the connection
while a job is queued or running, so a client that leaves cancels its job at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .engine import ContextOverflow, Job, LoadError
from .params import BadParam
from .supervisor import Engine, EngineCrashed

_GO_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_HTML_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&#39;", '"': "&#34;"}


def clean_path(path: str) -> str:
    """Go's ``path.Clean`` as DMR's mux applies it (a trailing slash is kept)."""
    cleaned = posixpath.normpath("/" + path.lstrip("/"))
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def go_json(value: Any) -> str:
    """JSON as Go's ``json.Encoder`` writes it: compact, UTF-8, ``<>&`` escaped, newline-ended."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in _GO_HTML_ESCAPES.items():
        text = text.replace(char, escaped)
    return text + "\n"


def go_html_escape(text: str) -> str:
    """Go's ``html.EscapeString`` (DMR escapes text/plain progress lines with it)."""
    return "".join(_GO_HTML_ENTITIES.get(c, c) for c in text)


def compact_json(value: Any) -> bytes:
    """JSON as llama-server writes it (nlohmann ``dump()``): compact, UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is over ``limit`` (the rest is drained so the client reads our answer)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    return b"".join(chunks) if size <= limit else None


def go_json_response(value: Any, status: int = 200) -> Response:
    return Response(go_json(value), status_code=status, media_type="application/json")


def text_error(message: str, status: int) -> Response:
    """Go's ``http.Error(w, message, status)``."""
    return Response(
        message + "\n", status_code=status, headers={"x-content-type-options": "nosniff"},
        media_type="text/plain; charset=utf-8",
    )


def llama_error(message: str, status: int = 400, kind: str = "invalid_request_error") -> Response:
    """llama-server's error object, which DMR passes through for inference errors."""
    body = {"error": {"code": status, "message": message, "type": kind}}
    return Response(compact_json(body), status_code=status, media_type="application/json; charset=utf-8")


def crash_response(message: str) -> Response:
    """DMR's answer when its llama.cpp runner dies under a request (scheduling/runner.go)."""
    body = {"type": "error", "code": None, "message": message, "param": None, "sequence_number": 1}
    return Response(go_json(body), status_code=500, media_type="application/json; charset=utf-8")


def error_response(exc: BaseException) -> Response:
    """The response for a job that failed before anything was sent."""
    if isinstance(exc, EngineCrashed):
        return crash_response(str(exc))
    if isinstance(exc, LoadError):
        return text_error(str(exc), 500)
    if isinstance(exc, ContextOverflow):
        return Response(compact_json(exc.body()), status_code=400, media_type="application/json; charset=utf-8")
    if isinstance(exc, BadParam | ValueError):
        return llama_error(str(exc), 400)
    return llama_error(f"{type(exc).__name__}: {exc}", 500, "server_error")


async def _watch_disconnect(receive: Receive, job: Job) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            job.cancel.set()
            return


class JobStream:
    """Server-sent events from a job: ``data: {chunk}`` … ``data: [DONE]``.

    The status line waits for the first chunk, so a job that fails at once (model cannot
    load, prompt too long) still gets a proper error status instead of a broken stream.
    """

    def __init__(self, engine: Engine, job: Job, tail: Callable[[Any], list[Any]] | None = None) -> None:
        self.engine, self.job, self.tail = engine, job, tail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(_watch_disconnect(receive, self.job))
        items = self.engine.run(self.job)
        started = False
        last = None
        try:
            try:
                async for chunk in items:
                    last = chunk
                    if not started:
                        await send({
                            "type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
                        })
                        started = True
                    await send({"type": "http.response.body", "body": b"data: " + compact_json(chunk) + b"\n\n",
                                "more_body": True})
            except Exception as exc:
                if not started:
                    await error_response(exc)(scope, receive, send)
                    return
                # llama-server reports a mid-stream failure as an `error:` line (docs/sbx-dmr-facts.md §2.6). A crash
                # of the engine is said the same way, with DMR's message; DMR itself would just cut
                # the stream (its proxy aborts), which leaves a client guessing.
                line = b"error: " + compact_json({"error": {"code": 500, "message": str(exc), "type": "server_error"}})
                await send({"type": "http.response.body", "body": line + b"\n\n", "more_body": False})
                return
            if self.job.cancel.is_set():
                return
            if not started:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
            tail = b"".join(b"data: " + compact_json(c) + b"\n\n" for c in (self.tail(last) if self.tail else []))
            await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n", "more_body": False})
        except OSError:
            pass  # the client is gone; the job was cancelled below
        finally:
            self.job.cancel.set()
            watcher.cancel()
            await items.aclose()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


class JobResult:
    """One JSON answer built from everything a job produced (non-streaming requests)."""

    def __init__(self, engine: Engine, job: Job, build: Callable[[list[Any]], dict[str, Any]]) -> None:
        self.engine, self.job, self.build = engine, job, build

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(_watch_disconnect(receive, self.job))
        items = self.engine.run(self.job)
        try:
            collected = [item async for item in items]
        except Exception as exc:
            response = error_response(exc)
        else:
            if self.job.cancel.is_set():  # the client left: nobody to answer
                return
            response = Response(compact_json(self.build(collected)), media_type="application/json; charset=utf-8")
        finally:
            watcher.cancel()
            await items.aclose()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        try:
            await response(scope, receive, send)
        except OSError:
            pass
