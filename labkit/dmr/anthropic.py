"""DMR's Anthropic Messages API (``/anthropic/v1/messages``, ``/engines[/{backend}]/v1/messages``, ``…/count_tokens``).

DMR checks the body and the model, then hands the unchanged body to llama.cpp's own
``/v1/messages`` (docs/dmr-agent-apis.md §3; model-runner ``pkg/anthropic/handler.go``).
So the answer's shapes are llama.cpp's (``server_chat_convert_anthropic_to_oai`` for the request,
``to_json_anthropic[_stream]`` for the answer), and only DMR's own checks answer in DMR's
envelope ``{"type":"error","error":{"type","message"}}``. Embedded mode does what llama.cpp does
in Python: the Messages body becomes a chat-completions body for ``ModelServer.chat_chunks``,
and the chat chunks become a Message or Anthropic's server-sent events.

The ``/engines/…`` spellings reach DMR's scheduler directly, without the Anthropic handler in
front: their DMR-level errors are the scheduler's plain-text ones, as for chat completions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from . import params
from .httpio import compact_json, crash_response, go_json, llama_error, read_limited, text_error
from .inference import BACKENDS, DEFAULT_BACKEND, MAX_BODY, InferenceError, model_not_found, not_installed
from .store import ModelNotFound, StoreError

if TYPE_CHECKING:
    from .server import ModelServer

Chunks = AsyncGenerator[dict[str, Any], None]
JSON_TYPE = "application/json; charset=utf-8"  # llama-server's content type

# -- DMR's checks --------------------------------------------------------------------------------


def anthropic_error(status: int, kind: str, message: str) -> Response:
    """DMR's ``writeAnthropicError``: the Anthropic envelope, Go's encoder (newline-ended)."""
    return Response(go_json({"type": "error", "error": {"type": kind, "message": message}}),
                    status_code=status, media_type="application/json")


def _decode(raw: bytes) -> dict[str, Any] | None:
    """The body as Go's ``json.Unmarshal`` into ``{Model string}`` sees it: None when that fails."""
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        return None
    if body is None:
        return {}  # Go decodes `null` into the zero struct: the model is then missing
    if not isinstance(body, dict) or not isinstance(body.get("model", ""), str | None):
        return None
    return body


async def _checked_body(server: ModelServer, request: Request) -> dict[str, Any] | Response:
    """DMR's checks before the body reaches llama.cpp, in DMR's order, with the route's error style."""
    anthropic_route = request.url.path.startswith("/anthropic/")
    backend = request.path_params.get("backend", DEFAULT_BACKEND)
    if not anthropic_route and backend not in BACKENDS:
        return text_error("backend not found", 404)
    raw = await read_limited(request, MAX_BODY)
    if raw is None:
        return (anthropic_error(413, "request_too_large", "Request body too large") if anthropic_route
                else text_error("request too large", 400))
    body = _decode(raw)
    if body is None:
        return (anthropic_error(400, "invalid_request_error", "Invalid JSON in request body") if anthropic_route
                else text_error("invalid request", 400))
    model_ref = body.get("model") or ""
    if not model_ref:
        return (anthropic_error(400, "invalid_request_error", "Missing required field: model") if anthropic_route
                else text_error("model is required", 400))
    try:
        server.store.get(model_ref)
    except StoreError as exc:
        if anthropic_route:  # DMR answers 404 for any GetLocal failure here
            return anthropic_error(404, "not_found_error", f"Model not found: {model_ref}")
        if isinstance(exc, ModelNotFound):
            return text_error(model_not_found(model_ref), 404)
        return text_error("model unavailable", 500)
    if backend != DEFAULT_BACKEND:
        return text_error(not_installed(backend), 412)
    return body


def inference_error(exc: InferenceError) -> Response:
    """An ``InferenceError`` as DMR passes it on: llama.cpp's JSON, DMR's texts for its own failures."""
    if exc.kind == "not_found":
        return text_error(exc.message, 404)
    if exc.status >= 500:  # a load failure is DMR's text; an engine crash its JSON (httpio.error_response)
        plain = exc.message.startswith("unable to load runner") or exc.message == "model unavailable"
        return text_error(exc.message, exc.status) if plain else crash_response(exc.message)
    if exc.body:
        return Response(compact_json(exc.body), status_code=exc.status, media_type=JSON_TYPE)
    kind = exc.kind if exc.kind.endswith("_error") else "invalid_request_error"
    return llama_error(exc.message, exc.status, kind)


# -- request: Messages → chat completions (llama.cpp's server_chat_convert_anthropic_to_oai) -------


def _text_of(blocks: Any) -> str:
    """The text of a string or of a list of blocks (other block types contribute nothing)."""
    if isinstance(blocks, str):
        return blocks
    if isinstance(blocks, list):
        return "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _image_part(source: dict[str, Any]) -> dict[str, Any] | None:
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/jpeg')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = str(source.get("url", ""))
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_message(block: dict[str, Any]) -> dict[str, Any]:
    """A ``tool_result`` block as a chat ``tool`` message.

    llama.cpp drops ``is_error`` (the chat format has no such flag) and so does embedded mode:
    the result's text, which normally says what failed, is what the model sees.
    """
    content = block.get("content")
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")),
            "content": content if isinstance(content, str) else _text_of(content)}


def _convert_blocks(role: str, blocks: list[Any]) -> list[dict[str, Any]]:
    """One Anthropic message with content blocks → the chat message(s) llama.cpp makes of it."""
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    reasoning = ""
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "thinking":
            reasoning += str(block.get("thinking", ""))
        elif kind == "image" and (part := _image_part(block.get("source") or {})):
            parts.append(part)
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False, separators=(",", ":"))
            calls.append({"id": str(block.get("id", "")), "type": "function",
                          "function": {"name": str(block.get("name", "")), "arguments": arguments}})
        elif kind == "tool_result":
            results.append(_tool_message(block))
    out: list[dict[str, Any]] = []
    if parts or calls or reasoning:
        message: dict[str, Any] = {"role": role, "content": parts or ""}
        if calls:
            message["tool_calls"] = calls
        if reasoning:
            message["reasoning_content"] = reasoning
        out.append(message)
    return out + results


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    if "messages" not in body:
        raise params.BadParam("'messages' is required")  # llama.cpp's words
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        out.append({"role": "system", "content": _text_of(system)})
    for message in body["messages"] if isinstance(body["messages"], list) else []:
        if not isinstance(message, dict):
            out.append(message)
            continue
        role, content = message.get("role", ""), message.get("content")
        if "content" not in message and role == "assistant":
            continue
        if isinstance(content, list):
            out += _convert_blocks(str(role), content)
        else:
            out.append(message)
    return out


def _tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if not isinstance(tools, list):
        return None
    return [{"type": "function", "function": {
        "name": str(t.get("name", "")), "description": str(t.get("description", "")),
        "parameters": t.get("input_schema") or {}}} for t in tools if isinstance(t, dict)]


def _tool_choice(choice: Any) -> str | dict[str, Any] | None:
    """Anthropic's ``tool_choice`` → chat's.

    Deliberate difference: llama.cpp maps ``tool`` to ``required`` and ignores ``none``; embedded
    mode keeps Anthropic's documented meaning (``tool`` forces that one tool, ``none`` forbids tools).
    With one tool, ``tool`` gives what llama.cpp gives.
    """
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "tool" and choice.get("name"):
        return {"type": "function", "function": {"name": str(choice["name"])}}
    return {"auto": "auto", "any": "required", "tool": "required", "none": "none"}.get(str(kind))


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body llama.cpp makes of a Messages body (raises ``BadParam``)."""
    chat: dict[str, Any] = {"model": body.get("model"), "messages": _messages(body)}
    if (tools := _tools(body)) is not None:
        chat["tools"] = tools
    if (choice := _tool_choice(body.get("tool_choice"))) is not None:
        chat["tool_choice"] = choice
    if isinstance(body.get("tool_choice"), dict) and body["tool_choice"].get("disable_parallel_tool_use"):
        chat["parallel_tool_calls"] = False
    if "stop_sequences" in body:
        chat["stop"] = body["stop_sequences"]
    # llama.cpp sends 4096 when `max_tokens` is missing (Anthropic requires it). Embedded mode leaves
    # it unset, so the server's own cap for unset limits applies (params.UNSET_MAX_TOKENS).
    if "max_tokens" in body:
        chat["max_tokens"] = body["max_tokens"]
    for key in ("temperature", "top_p", "top_k", "stream"):
        if key in body:
            chat[key] = body[key]
    return chat


# -- answer: chat chunks → a Message, or Anthropic's events (llama.cpp's to_json_anthropic*) ----------


def stop_reason(finish: str | None, tool_calls: bool) -> str:
    """llama.cpp: ``max_tokens`` unless the model stopped by itself (EOS or a stop word)."""
    if finish == "length":
        return "max_tokens"
    return "tool_use" if tool_calls else "end_turn"


def _tool_input(arguments: str) -> Any:
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Assembled:
    """Everything the chat chunks said, gathered (a non-streamed Message is built from it)."""

    id: str = ""
    text: str = ""
    reasoning: str = ""
    calls: dict[int, _Call] = field(default_factory=dict)
    finish: str | None = None
    usage: dict[str, int] = field(default_factory=dict)

    def add(self, chunk: dict[str, Any]) -> None:
        self.id = self.id or str(chunk.get("id", ""))
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            self.text += delta.get("content") or ""
            self.reasoning += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or []:
                mine = self.calls.setdefault(int(call.get("index", 0)), _Call())
                function = call.get("function") or {}
                mine.id = mine.id or call.get("id") or ""
                mine.name = mine.name or function.get("name") or ""
                mine.arguments += function.get("arguments") or ""
            self.finish = choice.get("finish_reason") or self.finish


def message(done: Assembled, model: str) -> dict[str, Any]:
    """llama.cpp's non-streamed Message (no ``timings``), blocks in its order: thinking, text, tool_use."""
    content: list[dict[str, Any]] = []
    if done.reasoning:
        content.append({"type": "thinking", "thinking": done.reasoning, "signature": ""})
    if done.text:
        content.append({"type": "text", "text": done.text})
    for _, call in sorted(done.calls.items()):
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call.arguments)})
    # `stop_sequence`: llama.cpp names the stop word that ended the text; the chat chunks do not say
    # which one it was (or whether it was end-of-turn), so embedded mode always answers null.
    return {"id": done.id, "type": "message", "role": "assistant", "content": content, "model": model,
            "stop_reason": stop_reason(done.finish, bool(done.calls)), "stop_sequence": None,
            "usage": {"cache_read_input_tokens": 0, "input_tokens": done.usage.get("prompt_tokens", 0),
                      "output_tokens": done.usage.get("completion_tokens", 0)}}


def sse(event: dict[str, Any]) -> bytes:
    """One event as llama.cpp frames it: ``event: <type>`` then ``data: <json>``."""
    return b"event: " + event["type"].encode() + b"\ndata: " + compact_json(event) + b"\n\n"


class EventStream:
    """Chat chunks → Anthropic stream events, as llama.cpp's ``to_json_anthropic_stream`` orders them.

    Blocks are numbered as they start (thinking, text, then each tool call); like llama.cpp, all
    blocks are closed at the end, in index order, before ``message_delta`` and ``message_stop``.
    """

    def __init__(self, model: str, input_tokens: int) -> None:
        self.model, self.input_tokens = model, input_tokens
        self.started = False
        self.blocks: dict[str, int] = {}  # "thinking", "text", "tool:<i>" → block index
        self.done = Assembled()

    def _block(self, key: str, start: dict[str, Any], out: list[dict[str, Any]]) -> int:
        if key not in self.blocks:
            self.blocks[key] = len(self.blocks)
            out.append({"type": "content_block_start", "index": self.blocks[key], "content_block": start})
        return self.blocks[key]

    def _delta(self, index: int, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": index, "delta": delta}

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        self.done.add(chunk)
        if not self.started:
            self.started = True
            out.append({"type": "message_start", "message": {
                "id": str(chunk.get("id", "")), "type": "message", "role": "assistant", "content": [],
                "model": self.model, "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": self.input_tokens, "output_tokens": 0}}})
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if thinking := delta.get("reasoning_content"):
                index = self._block("thinking", {"type": "thinking", "thinking": ""}, out)
                out.append(self._delta(index, {"type": "thinking_delta", "thinking": thinking}))
            if text := delta.get("content"):
                index = self._block("text", {"type": "text", "text": ""}, out)
                out.append(self._delta(index, {"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or []:
                out += self._tool_delta(call)
        return out

    def _tool_delta(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        key = f"tool:{int(call.get('index', 0))}"
        mine = self.done.calls.get(int(call.get("index", 0)), _Call())
        # Anthropic's own start block carries `input: {}`; llama.cpp's omits it (the SDKs accept both).
        index = self._block(key, {"type": "tool_use", "id": mine.id, "name": mine.name, "input": {}}, out)
        if arguments := (call.get("function") or {}).get("arguments"):
            out.append(self._delta(index, {"type": "input_json_delta", "partial_json": arguments}))
        return out

    def finish(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if "thinking" in self.blocks:  # Anthropic requires a signature before a thinking block closes
            out.append(self._delta(self.blocks["thinking"], {"type": "signature_delta", "signature": ""}))
        out += [{"type": "content_block_stop", "index": i} for i in sorted(self.blocks.values())]
        out.append({"type": "message_delta",
                    "delta": {"stop_reason": stop_reason(self.done.finish, bool(self.done.calls)),
                              "stop_sequence": None},
                    "usage": {"output_tokens": self.done.usage.get("completion_tokens", 0)}})
        out.append({"type": "message_stop"})
        return out


# -- the two endpoints --------------------------------------------------------------------------------


async def collect(request: Request, chunks: Chunks) -> list[dict[str, Any]] | None:
    """All chunks of a non-streamed answer; None (and the generation cancelled) if the client leaves."""

    async def drain() -> list[dict[str, Any]]:
        return [chunk async for chunk in chunks]

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work, watch = asyncio.ensure_future(drain()), asyncio.ensure_future(gone())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, watch):
            task.cancel()
        await asyncio.gather(work, watch, return_exceptions=True)  # the generator must be idle to close
        await chunks.aclose()
    return work.result() if work.done() and not work.cancelled() else None


async def prefetched(chunks: Chunks) -> Chunks:
    """The stream with its first chunk already read, so a failure at once still gets its own status line."""
    first = await anext(chunks, None)

    async def rest() -> Chunks:
        try:
            if first is not None:
                yield first
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    return rest()


async def _stream(server: ModelServer, chat: dict[str, Any], model: str) -> Response:
    try:
        args, _ = params.chat({**chat, "stream": True}, model)
        input_tokens = await server.count_tokens(model, messages=args["messages"], tools=args.get("tools"))
        chunks = await prefetched(server.chat_chunks(chat))
    except params.BadParam as exc:
        return llama_error(str(exc))
    except InferenceError as exc:
        return inference_error(exc)
    events = EventStream(model, input_tokens)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                for event in events.feed(chunk):
                    yield sse(event)
        except InferenceError as exc:  # mid-stream: Anthropic's error event (llama.cpp's: UNCONFIRMED)
            yield sse({"type": "error", "error": {"type": "api_error", "message": exc.message}})
            return
        finally:
            await chunks.aclose()
        for event in events.finish():
            yield sse(event)

    return StreamingResponse(body(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


def _endpoint(server: ModelServer, handle: Callable[..., Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        body = await _checked_body(server, request)
        if isinstance(body, Response):
            return body
        try:
            chat = to_chat(body)
        except params.BadParam as exc:
            return llama_error(str(exc))
        return await handle(server, request, chat, body["model"])

    return endpoint


async def messages(server: ModelServer, request: Request, chat: dict[str, Any], model: str) -> Response:
    """``POST …/v1/messages``: a Message, or its events when ``stream`` is true."""
    if chat.get("stream") is True:
        return await _stream(server, chat, model)
    try:
        chunks = await collect(request, server.chat_chunks(chat))
    except InferenceError as exc:
        return inference_error(exc)
    if chunks is None:
        return Response(status_code=499)  # nobody is listening any more
    done = Assembled()
    for chunk in chunks:
        done.add(chunk)
    return Response(compact_json(message(done, model)), media_type=JSON_TYPE)


async def count_tokens(server: ModelServer, request: Request, chat: dict[str, Any], model: str) -> Response:
    """``POST …/v1/messages/count_tokens``: ``{"input_tokens": N}`` and nothing else, N as a request's usage."""
    try:
        args, _ = params.chat({**chat, "stream": False}, model)
        count = await server.count_tokens(model, messages=args["messages"], tools=args.get("tools"))
    except params.BadParam as exc:
        return llama_error(str(exc))
    except InferenceError as exc:
        return inference_error(exc)
    return Response(compact_json({"input_tokens": count}), media_type=JSON_TYPE)


def routes(server: ModelServer) -> list[Route]:
    """DMR's Anthropic routes; ``/v1/messages`` arrives here as ``/engines/v1/messages`` (server.Front).

    Query strings (Claude Code's ``?beta=true``), ``anthropic-beta``, ``x-api-key`` and
    ``Authorization`` are not looked at, as DMR does not look at them.
    """
    out = []
    for prefix in ("/anthropic/v1", "/engines/v1", "/engines/{backend}/v1"):
        out += [Route(f"{prefix}/messages", _endpoint(server, messages), methods=["POST"]),
                Route(f"{prefix}/messages/count_tokens", _endpoint(server, count_tokens), methods=["POST"])]
    return out
