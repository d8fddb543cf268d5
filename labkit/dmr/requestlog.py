"""DMR's request log: the last 10 inference requests per model (`GET /engines/requests`).

Follows DMR's recorder (pkg/metrics/openai_recorder.go): one record per inference request that
reached the engine, keyed by model id, with the request body, the response (a streamed answer is
re-assembled into one JSON object first) or the error, the status, the user agent and the origin.
Nothing is persisted. ``GET /engines/requests`` answers JSON, or server-sent events
(``existing_request``, ``connected``, ``new_request``) with ``Accept: text/event-stream``.

The recorder is an ASGI middleware inside ``Front`` (so ``/v1/…`` already reads ``/engines/v1/…``).
It matches inference routes by path, so the translating APIs (Responses, Anthropic, Ollama) are
recorded without importing them. While a response streams it only appends the bytes; parsing
happens once the client has the whole answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .httpio import go_json, go_json_response
from .inference import DEFAULT_BACKEND, MAX_BODY  # larger requests are refused before DMR records them
from .store import StoreError

if TYPE_CHECKING:
    from .server import ModelServer

MAX_RECORDS = 10  # DMR's maximumRecordsPerModel
SUBSCRIBER_BUFFER = 100  # DMR's subscriberChannelBuffer: a slow follower misses events, never blocks
MAX_MEDIA = 100  # DMR's maxMediaDataLength: base64 media in a request is cut to this
STREAM_ERROR_CODE = 400  # DMR's defaultStreamingErrorCode
INLINE_ASSEMBLY = 256 << 10  # bigger answers are re-assembled off the event loop
ORIGIN_HEADER = "x-request-origin"  # DMR's inference.RequestOriginHeader
ORIGIN_ANTHROPIC, ORIGIN_OLLAMA = "anthropic/messages", "ollama/completion"

# The inference routes DMR records (its scheduler's OpenAI and Anthropic routes, and the requests
# its Responses and Ollama layers send there), as the paths look after Front's `/v1` aliasing.
_ENGINE_ROUTES = (r"(?:v1/(?:chat/completions|completions|embeddings|responses|messages|messages/count_tokens"
                  r"|images/generations)|rerank|score|responses)")
_ENGINE_PATH = re.compile(rf"/engines/{_ENGINE_ROUTES}")
_BACKEND_PATH = re.compile(rf"/engines/(?P<backend>[^/]+)/{_ENGINE_ROUTES}")
_OTHER_PATH = re.compile(r"/responses|/anthropic/v1/messages(?:/count_tokens)?|/api/(?:chat|generate)")


def kind_of(path: str) -> str | None:
    """Which recorder rules apply to ``path``: ``openai``, ``anthropic``, ``responses``, ``ollama``, or None."""
    if not _ENGINE_PATH.fullmatch(path):
        match = _BACKEND_PATH.fullmatch(path)
        if match and match["backend"] != DEFAULT_BACKEND:
            return None  # DMR answers other backends (404/412) before it records anything
        if match is None and _OTHER_PATH.fullmatch(path) is None:
            return None
    if path.startswith("/api/"):
        return "ollama"
    if path.endswith("/responses"):
        return "responses"
    if "/v1/messages" in path:
        return "anthropic"
    return "openai"


# -- Go's JSON, as DMR's recorder writes it ---------------------------------------------------


def go_marshal(value: Any, sort_keys: bool = False) -> str:
    """``json.Marshal``: compact, ``<>&`` escaped, no newline (maps come out with sorted keys)."""
    return go_json(value if not sort_keys else json.loads(json.dumps(value, sort_keys=True))).rstrip("\n")


def normalize_error(text: str) -> str:
    """DMR's ``normalizeErrorToJSON``: JSON stays as it is, anything else becomes ``{"error": "…"}``."""
    if not text:
        return '{"error": "unknown error"}'
    try:
        json.loads(text)
    except ValueError:
        return '{"error": ' + go_marshal(text) + "}"
    return text


def streaming_error(status: int, message: str, kind: str = "", details: str = "") -> str:
    """DMR's ``StreamingError`` as JSON (``type`` and ``details`` omitted when empty)."""
    out: dict[str, Any] = {"status_code": status, "message": message}
    if kind:
        out["type"] = kind
    if details:
        out["details"] = details
    return go_marshal(out)


def truncate_media(body: bytes) -> str:
    """DMR's ``truncateMediaFields``: base64 images and audio in chat messages cut to 100 characters."""
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(body)
    except ValueError:
        return text
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list):
        return text
    changed = False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for item in content if isinstance(content, list) else []:
            for key, inner in (("image_url", "url"), ("input_audio", "data")):
                holder = item.get(key) if isinstance(item, dict) else None
                if isinstance(holder, dict) and isinstance(holder.get(inner), str) and len(holder[inner]) > MAX_MEDIA:
                    holder[inner] = _truncate_base64(holder[inner])
                    changed = True
    return go_marshal(data, sort_keys=True) if changed else text


def _truncate_base64(data: str) -> str:
    if data.startswith("data:"):
        head, sep, rest = data.partition(",")
        if sep and len(rest) > MAX_MEDIA:
            return f"{head},{rest[:MAX_MEDIA]}...[truncated {len(rest) - MAX_MEDIA} chars]"
        return data
    return f"{data[:MAX_MEDIA]}...[truncated {len(data) - MAX_MEDIA} chars]"


# -- re-assembling streamed answers -----------------------------------------------------------

Assembled = tuple[str, str | None]  # (response, error JSON or None)


def assemble_openai(body: str) -> Assembled:
    """DMR's ``convertStreamingResponse``: chat chunks → one ``chat.completion`` (or the error)."""
    content: list[str] = []
    reasoning: list[str] = []
    last_chunk: dict[str, Any] | None = None
    last_choice: dict[str, Any] | None = None
    for line in body.split("\n"):
        if line.startswith("error: "):
            return body, _openai_stream_error(line[len("error: "):])
        if not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            break
        try:
            chunk = json.loads(data)
        except ValueError:
            continue
        if not isinstance(chunk, dict):
            continue
        last_chunk = chunk
        choices = chunk.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            last_choice = choices[0]
            delta = last_choice.get("delta")
            if isinstance(delta, dict):
                content.append(delta["content"] if isinstance(delta.get("content"), str) else "")
                reasoning.append(delta["reasoning_content"] if isinstance(delta.get("reasoning_content"), str) else "")
    if last_chunk is None:
        return body, None
    choice = dict(last_choice or {})
    message = {"role": "assistant", "content": "".join(content)}
    if "".join(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    choice["message"] = message
    choice.pop("delta", None)
    choice.setdefault("finish_reason", "stop")
    return go_marshal({**last_chunk, "choices": [choice], "object": "chat.completion"}, sort_keys=True), None


def _openai_stream_error(data: str) -> str:
    try:
        obj = json.loads(data)
        assert isinstance(obj, dict)
    except (ValueError, AssertionError):
        return streaming_error(STREAM_ERROR_CODE, "unparseable streaming error", details=data)
    # DMR reads the top level of the `error:` line; llama-server nests it under "error".
    error = obj.get("error")
    inner = error if isinstance(error, dict) else obj
    code = inner.get("code")
    return streaming_error(int(code) if isinstance(code, int | float) else STREAM_ERROR_CODE,
                           str(inner.get("message", "streaming error")), str(inner.get("type", "")), data)


def assemble_anthropic(body: str) -> Assembled:
    """DMR's ``convertAnthropicStreamingResponse``: Messages events → one ``message`` (or the error)."""
    text: list[str] = []
    message: dict[str, Any] | None = None
    event = ""
    for line in body.split("\n"):
        if line.startswith("event: "):
            event = line[len("event: "):]
            continue
        if not line.startswith("data: ") or not line[len("data: "):]:
            continue
        data = line[len("data: "):]
        try:
            chunk = json.loads(data)
            assert isinstance(chunk, dict)
        except (ValueError, AssertionError):
            continue
        kind = chunk.get("type")
        if event == "error" or kind == "error":
            error = chunk.get("error")
            inner = error if isinstance(error, dict) else {}
            return body, streaming_error(STREAM_ERROR_CODE, str(inner.get("message", "streaming error")),
                                         str(inner.get("type", "")), data)
        if kind == "message_start" and isinstance(chunk.get("message"), dict):
            message = chunk["message"]
        elif kind == "content_block_delta":
            delta = chunk.get("delta") or {}
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                text.append(delta["text"])
        elif kind == "message_delta" and message is not None:
            if isinstance(chunk.get("usage"), dict):
                message["usage"] = chunk["usage"]
            reason = (chunk.get("delta") or {}).get("stop_reason")
            if isinstance(reason, str):
                message["stop_reason"] = reason
    if message is None:
        return body, None
    final = {**message, "content": [{"type": "text", "text": "".join(text)}]}
    final.setdefault("stop_reason", "end_turn")
    return go_marshal(final, sort_keys=True), None


def assemble_responses(body: str) -> Assembled:
    """A Responses stream → its final ``response`` object (from ``response.completed``/``failed``).

    DMR records the chat-completions request its Responses layer sends upstream; embedded mode
    records the Responses request itself, so the answer is re-assembled from the Responses events.
    """
    final: dict[str, Any] | None = None
    event = ""
    for line in body.split("\n"):
        if line.startswith("event: "):
            event = line[len("event: "):]
            continue
        if not line.startswith("data: "):
            continue
        try:
            data = json.loads(line[len("data: "):])
            assert isinstance(data, dict)
        except (ValueError, AssertionError):
            continue
        kind = data.get("type", event)
        if kind == "error":
            return body, streaming_error(STREAM_ERROR_CODE, str(data.get("message", "streaming error")),
                                         str(data.get("code") or ""), line[len("data: "):])
        if kind in ("response.completed", "response.failed", "response.incomplete") and isinstance(
                data.get("response"), dict):
            final = data["response"]
    return (go_marshal(final), None) if final is not None else (body, None)


def assemble_ollama(body: str) -> Assembled:
    """Ollama's NDJSON stream → one object (the last line, with the whole text); DMR's Ollama layer
    records the OpenAI request it sends upstream instead, embedded mode records the Ollama one."""
    lines = []
    for raw in body.split("\n"):
        if raw.strip():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                return body, None
    if len(lines) < 2 or not all(isinstance(obj, dict) for obj in lines):
        return body, None
    failed = next((obj for obj in lines if "error" in obj), None)
    if failed is not None:
        return body, streaming_error(STREAM_ERROR_CODE, str(failed["error"]), details=go_marshal(failed))
    final = dict(lines[-1])
    if any(isinstance(obj.get("message"), dict) for obj in lines):
        text = "".join(str((obj.get("message") or {}).get("content") or "") for obj in lines)
        final["message"] = {**(final.get("message") or {"role": "assistant"}), "content": text}
    else:
        final["response"] = "".join(str(obj.get("response") or "") for obj in lines)
    return go_marshal(final), None


def assemble(kind: str, origin: str, body: str) -> Assembled:
    """The stored answer for one response body, by DMR's rule: a body with ``data: `` lines is a stream."""
    if kind == "ollama":
        return assemble_ollama(body)
    if "data: " not in body:
        return body, None
    if kind == "responses":
        return assemble_responses(body)
    return assemble_anthropic(body) if origin == ORIGIN_ANTHROPIC else assemble_openai(body)


# -- the log ----------------------------------------------------------------------------------


@dataclass
class Record:
    """DMR's ``RequestResponsePair`` (empty response, error, user agent and origin are omitted)."""

    id: str
    model: str
    method: str
    url: str
    request: str
    timestamp: int
    user_agent: str = ""
    origin: str = ""
    response: str = ""
    error: str = ""
    status_code: int = 0

    def api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "model": self.model, "method": self.method, "url": self.url,
                               "request": self.request}
        if self.response:
            out["response"] = self.response
        if self.error:
            out["error"] = self.error
        out.update(timestamp=self.timestamp, status_code=self.status_code)
        if self.user_agent:
            out["user_agent"] = self.user_agent
        if self.origin:
            out["origin"] = self.origin
        return out


@dataclass
class ModelLog:
    """One model's ring of records (DMR's ``ModelData``; its ``config`` is read when shown)."""

    records: deque[Record] = field(default_factory=lambda: deque(maxlen=MAX_RECORDS))


def entry(model: str, config: dict[str, Any], records: list[Record]) -> dict[str, Any]:
    """DMR's ``ModelRecordsResponse``."""
    return {"count": len(records), "model": model, "config": config, "records": [r.api() for r in records]}


class RequestLog:
    """The records of every model, and the followers of ``GET /engines/requests`` (one event loop)."""

    def __init__(self, resolve: Callable[[str], str], config_of: Callable[[str], dict[str, Any]]) -> None:
        self.resolve = resolve  # DMR's ResolveID: a reference → the model id, or itself when unknown
        self.config_of = config_of  # the model's `docker model configure` settings
        self.models: dict[str, ModelLog] = {}
        self.followers: set[asyncio.Queue[list[dict[str, Any]]]] = set()

    def add(self, record: Record, model_id: str) -> None:
        """Keep a new record (the oldest of the model's 10 goes)."""
        self.models.setdefault(model_id, ModelLog()).records.append(record)

    def finished(self, record: Record, model_id: str) -> None:
        """Tell the followers about a completed record (DMR's broadcast: a full queue misses it).

        ``config`` is the model's current `docker model configure` settings (DMR: those its runner
        started with)."""
        log = self.models.get(model_id)
        if log is None or not any(r is record for r in log.records):
            return  # pushed out of the ring while it ran
        event = [entry(record.model, self.config_of(model_id), [record])]
        for queue in list(self.followers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    def listing(self, model: str = "") -> list[dict[str, Any]]:
        """The JSON of ``GET /engines/requests``: every model, or the one ``model`` resolves to."""
        ids = list(self.models) if not model else [self.resolve(model)]
        return [entry(mid, self.config_of(mid), list(self.models[mid].records)) for mid in ids if mid in self.models]

    def existing_events(self, model: str = "") -> list[list[dict[str, Any]]]:
        """One ``existing_request`` event per stored record, each shaped like a listing of one."""
        return [[entry(e["model"], e["config"], [r])]
                for e in self.listing(model) for r in self.models[e["model"]].records]


_LOGS: weakref.WeakKeyDictionary[ModelServer, RequestLog] = weakref.WeakKeyDictionary()


def log_of(server: ModelServer) -> RequestLog:
    """The server's request log, shared by the middleware and the route (whichever is built first)."""
    if server not in _LOGS:

        def resolve(ref: str) -> str:
            try:
                return server.store.get(ref).id
            except StoreError:
                return ref

        def config_of(model_id: str) -> dict[str, Any]:
            configs = getattr(server, "configs", None)  # configure.RunnerConfigs, when the server has one
            for backend, mid, mode, config in configs.entries() if configs is not None else []:
                if (backend, mid, mode) == (DEFAULT_BACKEND, model_id, "completion"):
                    return dict(config)
            return {}

        _LOGS[server] = RequestLog(resolve, config_of)
    return _LOGS[server]


# -- the middleware ---------------------------------------------------------------------------


class Recorder:
    """ASGI middleware that records inference requests and their (re-assembled) answers."""

    def __init__(self, app: ASGIApp, server: ModelServer) -> None:
        self.app, self.server = app, server
        self.log = log_of(server)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = kind_of(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        await _Exchange(self, scope, kind).run(receive, send)


class _Exchange:
    """One recorded request: its body and answer are collected as bytes while they pass through."""

    def __init__(self, recorder: Recorder, scope: Scope, kind: str) -> None:
        self.recorder, self.scope, self.kind = recorder, scope, kind
        self.started = time.time()
        self.body: list[bytes] = []
        self.body_size = 0
        self.answer: list[bytes] = []
        self.status = 0
        self.record: Record | None = None
        self.model_id = ""

    async def run(self, receive: Receive, send: Send) -> None:
        async def tee_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                self.body_size += len(chunk)
                if self.body_size <= MAX_BODY:
                    self.body.append(chunk)
            return message

        async def tee_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                self.answer.append(message.get("body", b""))
                await send(message)
                return
            await send(message)
            if message["type"] == "http.response.start":
                self.status = int(message["status"])
                self.open()

        try:
            await self.app(tee_receive, tee_send)
        finally:
            await self.close()

    def app(self, receive: Receive, send: Send) -> Any:
        return self.recorder.app(self.scope, receive, send)

    def open(self) -> None:
        """Create the record once the server answers (DMR: once the engine takes the request).

        Requests DMR refuses before its engine sees them (bad JSON, no model, unknown model,
        body over 10 MiB) are not recorded, as in DMR.
        """
        if self.record is not None or self.body_size > MAX_BODY:
            return
        raw = b"".join(self.body)
        try:
            model = json.loads(raw).get("model")
        except (ValueError, AttributeError):
            return
        if not isinstance(model, str) or not model:
            return
        try:
            self.model_id = self.recorder.server.store.get(model).id
        except StoreError:
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.scope.get("headers", [])}
        self.record = Record(
            id=f"{self.model_id}_{time.time_ns()}", model=model, method=self.scope["method"],
            url=self.scope["path"], request=truncate_media(raw), timestamp=int(self.started),
            user_agent=headers.get("user-agent", ""), origin=self._origin(headers),
        )
        self.recorder.log.add(self.record, self.model_id)

    def _origin(self, headers: dict[str, str]) -> str:
        """DMR's ``X-Request-Origin``: the client's, else what DMR's Anthropic and Ollama layers set."""
        if self.kind == "ollama":
            return ORIGIN_OLLAMA
        origin = headers.get(ORIGIN_HEADER, "")
        if not origin and self.kind == "anthropic" and self.scope["path"].endswith("/v1/messages"):
            return ORIGIN_ANTHROPIC
        return origin

    async def close(self) -> None:
        """Store the answer (re-assembled) and tell the followers, after the client has it all."""
        self.open()  # no answer at all (the client left): DMR records 408 Request Timeout
        record = self.record
        if record is None:
            return
        status = self.status or 408
        body = b"".join(self.answer).decode("utf-8", errors="replace")
        if len(body) > INLINE_ASSEMBLY:
            response, error = await asyncio.to_thread(assemble, self.kind, record.origin, body)
        else:
            response, error = assemble(self.kind, record.origin, body)
        record.status_code = status
        if error is None and status >= 400:
            error = normalize_error(response)
        record.response, record.error = ("", error) if error is not None else (response, "")
        self.recorder.log.finished(record, self.model_id)


# -- GET /engines/requests --------------------------------------------------------------------


class EventStream(Response):
    """DMR's follow mode: existing records (if asked), ``connected``, then one event per new record."""

    def __init__(self, log: RequestLog, model: str, include_existing: bool) -> None:
        # No Response.__init__: it would add `content-length: 0` to an endless body.
        self.status_code, self.background = 200, None
        self.raw_headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        self.log, self.model, self.include_existing = log, model, include_existing

    def wanted(self, event: list[dict[str, Any]]) -> bool:
        """DMR keeps events whose request named ``model`` literally; embedded also matches any
        spelling of the same model (a superset: `--model smollm2` sees `ai/smollm2:latest` requests)."""
        if not self.model:
            return True
        named = event[0]["model"]
        return named == self.model or self.log.resolve(named) == self.log.resolve(self.model)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue(SUBSCRIBER_BUFFER)
        self.log.followers.add(queue)
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            head = b""
            if self.include_existing:
                head = b"".join(_event("existing_request", e) for e in self.log.existing_events(self.model))
            await send({"type": "http.response.body", "body": head + b'event: connected\ndata: {"status": "connected"}'
                        b"\n\n", "more_body": True})
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return
                if self.wanted(getter.result()):
                    await send({"type": "http.response.body", "body": _event("new_request", getter.result()),
                                "more_body": True})
        except OSError:
            return  # the follower went away mid-write
        finally:
            self.log.followers.discard(queue)
            gone.cancel()


def _event(name: str, data: list[dict[str, Any]]) -> bytes:
    return f"event: {name}\ndata: {go_marshal(data)}\n\n".encode()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def routes(server: ModelServer) -> list[Route]:
    """This module's routes, registered by the server before its catch-alls."""

    async def requests(request: Request) -> Response:
        log = log_of(server)
        model = request.query_params.get("model", "")
        if "text/event-stream" in request.headers.get("accept", ""):
            return EventStream(log, model, request.query_params.get("include_existing") == "true")
        return go_json_response(log.listing(model))

    return [Route("/engines/requests", requests, methods=["GET"])]
