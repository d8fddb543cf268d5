"""The OpenAI Responses API of the embedded Docker Model Runner: a translator onto chat completions.

Follows DMR's ``pkg/responses`` (docs/dmr-agent-apis.md §1–2): the request becomes a chat
completions body for ``ModelServer.chat_chunks``, the chunks become a Response object or DMR's SSE
events, and responses are kept in memory for ``previous_response_id`` (1 h TTL). Translation is
in ``responses_translate`` (request, Response object) and ``responses_stream`` (events).

``LABKIT_DMR_COMPAT`` picks the DMR version to behave as, read when the routes are built:
``current`` (default: DMR's code after 2026-07-13) or ``1.2.6`` (the last release: only
``/responses`` and ``/v1/responses``; ``include``, ``text``, ``store``, non-function tools … ignored).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Scope

from .httpio import clean_path, compact_json, go_json, read_limited, text_error
from .inference import BACKENDS, DEFAULT_BACKEND, MAX_BODY, InferenceError, model_not_found, not_installed
from .responses_stream import StreamTranslator, sse
from .responses_translate import (
    CURRENT,
    REQUEST,
    V126,
    BadRequest,
    chat_request,
    collect,
    complete,
    go_type_error,
    new_response,
    public,
    unsupported_field,
)
from .store import ModelNotFound

if TYPE_CHECKING:
    from .server import ModelServer

COMPAT_ENV = "LABKIT_DMR_COMPAT"
TTL_SECONDS = 3600.0  # DMR's DefaultTTL


class CompatError(ValueError):
    """``LABKIT_DMR_COMPAT`` names a DMR version this server cannot behave as."""


def compat_setting() -> str:
    """``current`` or ``1.2.6`` from the environment; anything else stops the server at start-up."""
    value = os.environ.get(COMPAT_ENV, "").strip() or CURRENT
    if value not in (CURRENT, V126):
        raise CompatError(f'{COMPAT_ENV}="{value}" is not a DMR behaviour labkit knows: use "current" (DMR\'s '
                          'code after 2026-07-13, the default) or "1.2.6" (the last release)')
    return value


class ResponseStore:
    """DMR's in-memory response store: kept for ``ttl`` seconds, expired entries dropped as new ones come."""

    def __init__(self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._items: dict[str, tuple[float, dict[str, Any]]] = {}

    def save(self, response: dict[str, Any]) -> None:
        now = self.clock()
        self._items = {k: v for k, v in self._items.items() if v[0] > now}
        self._items[response["id"]] = (now + self.ttl, response)

    def get(self, response_id: str) -> dict[str, Any] | None:
        expires, response = self._items.get(response_id, (0.0, None))
        return response if expires > self.clock() else None

    def delete(self, response_id: str) -> bool:
        """As DMR: an entry still held (even if expired) counts as deleted."""
        return self._items.pop(response_id, None) is not None


def dmr_error(status: int, code: str, message: str) -> Response:
    """DMR's ``sendError``: ``{"error":{"code","message"}}`` from Go's JSON encoder."""
    return Response(go_json({"error": {"code": code, "message": message}}), status, media_type="application/json")


def json_response(value: Any, status: int = 200) -> Response:
    return Response(go_json(value), status, media_type="application/json")


def go_syntax_error(exc: json.JSONDecodeError) -> str:
    """Go's message for a body that is not JSON (the common cases; Go names more contexts)."""
    text = exc.doc
    if exc.pos >= len(text.rstrip()):
        return "unexpected end of JSON input"
    context = {"Expecting property name enclosed in double quotes": "looking for beginning of object key string",
               "Expecting ':' delimiter": "after object key", "Expecting ',' delimiter": "after object key:value pair",
               "Extra data": "after top-level value"}.get(exc.msg, "looking for beginning of value")
    return f"invalid character '{text[exc.pos]}' {context}"


def client_path(scope: Scope) -> str:
    """The path as the client sent it (``raw_path``; Front routes ``/v1/…`` as ``/engines/v1/…``)."""
    raw = scope.get("raw_path")
    return clean_path(unquote(raw.decode("latin-1"))) if raw else scope["path"]


class ResponsesAPI:
    """The handlers, over one model server and one response store."""

    def __init__(self, server: ModelServer, compat: str) -> None:
        self.server, self.compat = server, compat
        self.store = ResponseStore()

    def routes(self) -> list[Route]:
        prefixes = ["/responses", "/engines/v1/responses"]  # /v1/responses arrives as /engines/v1/… (Front)
        extra: list[Route] = []
        if self.compat == CURRENT:
            prefixes += ["/engines/responses", "/engines/{backend}/v1/responses"]
        else:  # v1.2.6's router sent /engines/responses to this handler, whose own mux had no such route
            extra = [Route(p, _page_not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
                     for p in ("/engines/responses", "/engines/responses/{rest:path}")]
        out = []
        for prefix in prefixes:
            out += [Route(prefix, self.create, methods=["POST"]),
                    Route(prefix + "/{id}", self.get, methods=["GET"]),
                    Route(prefix + "/{id}/input_items", self.input_items, methods=["GET"]),
                    Route(prefix + "/{id}", self.delete, methods=["DELETE"])]
        return out + extra

    def _refused(self, request: Request) -> Response | None:
        """1.2.6 has no ``/engines/v1/responses``: DMR's scheduler answers it as any unknown path."""
        if self.compat == V126 and client_path(request.scope).startswith("/engines/"):
            return text_error("not found", 404)
        return None

    # -- POST ----------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        raw = await read_limited(request, MAX_BODY)
        if raw is None:
            return dmr_error(413, "request_too_large", f"Request body too large (max {MAX_BODY} bytes)")
        try:
            body = json.loads(raw.decode("utf-8", errors="replace"))
        except json.JSONDecodeError as exc:
            return dmr_error(400, "invalid_request", "Invalid JSON: " + go_syntax_error(exc))
        body = {} if body is None else body  # Go decodes `null` into an empty request
        if error := go_type_error(body, REQUEST[self.compat]):
            return dmr_error(400, "invalid_request", "Invalid JSON: " + error)
        if not body.get("model"):
            return dmr_error(400, "invalid_request", "model is required")
        if self.compat == CURRENT and (error := unsupported_field(body)):
            return dmr_error(400, "invalid_request", error)
        response = new_response(body, self.compat, int(time.time()))
        try:
            chat = chat_request(body, self.compat, self.store.get)
        except BadRequest as exc:
            return dmr_error(400, "invalid_request", str(exc))
        keep = response.get("store") is not False
        chunks = self._chunks(chat, request.path_params.get("backend"))
        if body.get("stream"):
            return StreamingResponse(self._events(chunks, response, keep),
                                     headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        return await self._whole(chunks, response, keep)

    async def _chunks(self, chat: dict[str, Any], backend: str | None) -> AsyncGenerator[dict[str, Any]]:
        """The upstream chat stream; a backend in the path is checked as DMR's scheduler does."""
        if backend is not None and backend not in BACKENDS:
            raise InferenceError(404, "backend not found", "not_found")
        if backend is not None and backend != DEFAULT_BACKEND:
            try:
                self.server.store.get(chat["model"])
            except ModelNotFound:
                raise InferenceError(404, model_not_found(chat["model"]), "not_found") from None
            raise InferenceError(412, not_installed(backend), "not_installed")
        async for chunk in self.server.chat_chunks(chat):
            yield chunk

    async def _whole(self, chunks: AsyncGenerator[dict[str, Any]], response: dict[str, Any], keep: bool) -> Response:
        """The non-streaming answer; an upstream failure is a failed Response with the upstream's status."""
        try:
            collected = collect([chunk async for chunk in chunks])
        except InferenceError as exc:
            status, body = upstream_answer(exc)
            response["status"], response["error"] = "failed", failure_detail(body)
            if keep:
                self.store.save(response)
            return json_response(public(response), status)
        complete(response, collected)
        if keep:
            self.store.save(response)
        return json_response(public(response))

    async def _events(self, chunks: AsyncGenerator[dict[str, Any]], response: dict[str, Any],
                      keep: bool) -> AsyncIterator[bytes]:
        """DMR's event stream. A failure before the first chunk is DMR's ``error`` + ``response.failed``.

        Deliberate difference: a failure after the stream began (the engine crashed) ends with the
        same two events, carrying the engine's message; DMR's proxy would just cut the stream.
        """
        translator = StreamTranslator(response)
        try:
            try:
                first = await anext(chunks, None)
            except InferenceError as exc:
                events = translator.fail(f"Upstream service returned status code: {upstream_answer(exc)[0]}")
                yield self._last(events, response, keep)
                return
            yield b"".join(sse(e) for e in translator.start() + (translator.feed(first) if first else []))
            try:
                async for chunk in chunks:
                    yield b"".join(sse(e) for e in translator.feed(chunk))
            except InferenceError as exc:
                yield self._last(translator.fail(exc.message, {"code": "upstream_error", "message": exc.message}),
                                 response, keep)
                return
            yield self._last(translator.finish(), response, keep)
        finally:
            await chunks.aclose()

    def _last(self, events: list[Any], response: dict[str, Any], keep: bool) -> bytes:
        """The closing frames; the response is stored first, so a client may chain on it at once."""
        if keep:
            self.store.save(response)
        return b"".join(sse(e) for e in events)

    # -- GET / DELETE --------------------------------------------------------------------------

    async def get(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        found = self.store.get(request.path_params["id"])
        return json_response(public(found)) if found else dmr_error(404, "not_found", "Response not found")

    async def input_items(self, request: Request) -> Response:
        """As DMR: input items are not stored, so the list is always empty."""
        if (refused := self._refused(request)) is not None:
            return refused
        if self.store.get(request.path_params["id"]) is None:
            return dmr_error(404, "not_found", "Response not found")
        return json_response({"object": "list", "data": []})

    async def delete(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        response_id = request.path_params["id"]
        if not self.store.delete(response_id):
            return dmr_error(404, "not_found", "Response not found")
        return json_response({"id": response_id, "object": "response.deleted", "deleted": True})


async def _page_not_found(request: Request) -> Response:
    """Go's ``http.ServeMux`` answer for a path it has no route for."""
    return text_error("404 page not found", 404)


def upstream_answer(exc: InferenceError) -> tuple[int, str]:
    """Status and body the chat completions endpoint would have sent for this failure (DMR's upstream)."""
    if exc.body is not None:
        return exc.status, compact_json(exc.body).decode()
    if exc.status == 400 and exc.kind == "invalid_request" and exc.message != "model is required":
        body = {"error": {"code": 400, "message": exc.message, "type": "invalid_request_error"}}
        return 400, compact_json(body).decode()  # llama-server's own error (params.BadParam)
    return exc.status, exc.message + "\n"  # DMR's text errors (Go http.Error)


def failure_detail(body: str) -> dict[str, str]:
    """The ``error`` of a failed non-stream Response, as DMR decodes the upstream body.

    DMR reads ``{"error":{"message","type","code"}}`` with string fields; anything else (plain
    text, or llama.cpp's numeric ``code``) fails to decode and becomes ``upstream_error`` with the
    whole body as message.
    """
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    decodes = error is None or (isinstance(error, dict) and all(isinstance(error.get(k), str | None)
                                                                for k in ("message", "type", "code")))
    if isinstance(data, dict) and decodes and isinstance(error, dict) and error.get("message"):
        return {**({"code": error["code"]} if error.get("code") else {}), "message": error["message"]}
    return {"code": "upstream_error", "message": body}


def routes(server: ModelServer) -> list[Route]:
    """This API's routes, registered by the server before its catch-alls (``LABKIT_DMR_COMPAT`` read here)."""
    return ResponsesAPI(server, compat_setting()).routes()
