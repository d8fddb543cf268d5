"""DMR's Ollama-compatible API (``/api/…``), a translator onto the server's own chat completions and store.

Shapes, defaults and error texts follow model-runner's ``pkg/ollama`` (``http_handler.go``,
``api.go``; docs/dmr-agent-apis.md §6), which follows Ollama's: NDJSON lines while
streaming (the default), one JSON object with ``"stream": false``. DMR answers ``/api/chat``
*and* ``/api/generate`` through chat completions (a prompt becomes one user message), so does
embedded mode. Where DMR differs from Ollama (no token counts, ``size`` 0, content type
``application/json`` for streams), embedded mode does what DMR does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from . import catalog, refs
from .anthropic import Assembled, Chunks, collect, prefetched
from .httpio import crash_response, go_json, go_json_response, text_error
from .inference import InferenceError, model_not_found
from .store import StoredModel, StoreError

if TYPE_CHECKING:
    from .server import ModelServer

VERSION = "0.1.0"  # DMR's handleVersion answers this fixed string
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time (json `omitempty` does not drop a struct)
# Go's `json.Decoder` field types of DMR's request structs; a wrong type is a 400 like a bad JSON.
_STRING_FIELDS = ("name", "model", "prompt")
_STRUCTS = {"show": "ShowRequest", "chat": "ChatRequest", "generate": "GenerateRequest",
            "pull": "PullRequest", "delete": "DeleteRequest"}


# -- Go's encodings ---------------------------------------------------------------------------------


def go_time(moment: datetime | None = None) -> str:
    """A Go ``time.Time`` as its JSON (RFC 3339 with nanoseconds, trailing zeros cut, ``Z`` for UTC)."""
    moment = (moment or datetime.now(UTC)).astimezone()
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    offset = moment.strftime("%z")
    return text + ("Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}")


def _decode(raw: bytes, struct: str) -> dict[str, Any] | str:
    """The request as Go's ``json.NewDecoder(r.Body).Decode(&req)`` sees it, or its error text.

    Go's texts for the common failures; the exact wording of rarer syntax errors is UNCONFIRMED.
    """
    text = raw.decode("utf-8", "replace")
    if not text.strip():
        return "EOF"
    try:
        body, _ = json.JSONDecoder().raw_decode(text.lstrip())
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.lstrip()):
            return "unexpected EOF"
        return f"invalid character {text.lstrip()[exc.pos]!r} looking for beginning of value"
    if body is None:
        return {}
    if not isinstance(body, dict):
        return f"json: cannot unmarshal {_go_kind(body)} into Go value of type ollama.{struct}"
    for key in _STRING_FIELDS:
        if body.get(key) is not None and not isinstance(body[key], str):
            return f"json: cannot unmarshal {_go_kind(body[key])} into Go struct field {struct}.{key} of type string"
    return body


_GO_KINDS: dict[type, str] = {str: "string", list: "array", dict: "object"}


def _go_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return _GO_KINDS.get(type(value), "value")


async def _request(request: Request, endpoint: str) -> tuple[dict[str, Any], str] | Response:
    """The decoded body and the model it names (``name`` first, else ``model``, as DMR), or the 400."""
    body = _decode(await request.body(), _STRUCTS[endpoint])
    if isinstance(body, str):
        return text_error(f"Invalid request: {body}", 400)
    return body, str(body.get("name") or body.get("model") or "")


def _json(value: Any, status: int = 200) -> Response:
    return go_json_response(value, status)


def _details(model: StoredModel) -> dict[str, Any]:
    """DMR's ``ModelDetails``: the format is always "gguf" in DMR's code."""
    arch = model.config.get("architecture", "")
    return {"format": "gguf", "family": arch, "families": [arch],
            "parameter_size": model.config.get("parameters", ""),
            "quantization_level": model.config.get("quantization", "")}


# -- models -----------------------------------------------------------------------------------------


async def version(request: Request) -> Response:
    return _json({"version": VERSION})


def _tags(server: ModelServer) -> Callable[[Request], Any]:
    async def tags(request: Request) -> Response:
        """One entry per tag (untagged: the id), as Ollama lists them; DMR leaves ``size`` at 0."""
        try:
            models = server.store.models()
        except StoreError:
            return text_error("Failed to list models", 500)
        out = []
        for model in models:
            for tag in model.tags or [model.id]:
                out.append({"name": tag, "model": tag,
                            "modified_at": go_time(datetime.fromtimestamp(model.created, UTC)),
                            "size": 0, "digest": model.id, "details": _details(model)})
        return _json({"models": out})

    return tags


def _ps(server: ModelServer) -> Callable[[Request], Any]:
    async def ps(request: Request) -> Response:
        """The loaded runners. Embedded runners never expire (keep-alive -1), so ``expires_at`` stays
        Go's zero time, as DMR leaves it for a negative keep-alive."""
        out = []
        for runner in server.engine.runners():
            name = str(runner.get("model_name", ""))
            try:
                model = server.store.get(name)
            except StoreError:
                out.append({"name": name, "model": name, "size": 0, "digest": name, "expires_at": ZERO_TIME})
                continue
            first = model.tags[0] if model.tags else name
            out.append({"name": first, "model": first, "size": 0, "digest": model.id, "expires_at": ZERO_TIME})
        return _json({"models": out})

    return ps


def _show(server: ModelServer) -> Callable[[Request], Any]:
    async def show(request: Request) -> Response:
        """``details``, as DMR (its ShowResponse leaves license, modelfile, parameters and template empty).

        Deliberate difference: also ``model_info`` (the GGUF metadata, as Ollama sends it). DMR has no
        such field, and the ``ollama`` client's ``show()`` fails without it (a required field there).
        """
        got = await _request(request, "show")
        if isinstance(got, Response):
            return got
        _, name = got
        try:
            model = server.store.get(name)
        except StoreError:
            return text_error(f"Model not found: {model_not_found(name)}", 404)
        return _json({"details": _details(model), "model_info": dict(model.config.get("gguf") or {})})

    return show


def _delete(server: ModelServer) -> Callable[[Request], Any]:
    async def delete(request: Request) -> Response:
        """Unload, then untag or delete as ``DELETE /models/{name}`` does; every failure is DMR's 500."""
        got = await _request(request, "delete")
        if isinstance(got, Response):
            return got
        _, name = got
        try:
            ids = {server.store.get(name).id}
        except StoreError:
            ids = set()
        if ids:
            await server.engine.unload(ids)
        try:
            before = {m.id for m in server.store.models()}
            server.store.delete(name, False)
            gone = before - {m.id for m in server.store.models()}
        except StoreError as exc:
            return text_error(f"Failed to delete model: error while deleting model: {exc}", 500)
        if gone:
            server.engine.forget(gone)
        return Response("{}", media_type="application/json")

    return delete


# -- pull ---------------------------------------------------------------------------------------------


def pull_status(line: dict[str, Any]) -> dict[str, Any]:
    """One of DMR's pull progress messages in Ollama's form (DMR's ``ollamaProgressWriter``)."""
    kind = line.get("type")
    if kind == "progress":
        layer = line.get("layer") or {}
        out: dict[str, Any] = {"status": "pulling manifest"}
        digest = str(layer.get("id") or "")
        if digest:
            short = digest[7:19] if digest.startswith("sha256:") and len(digest) >= 19 else digest
            out = {"status": f"pulling {short}", "digest": digest}
        if layer.get("size"):
            out["total"] = layer["size"]
        if layer.get("current"):
            out["completed"] = layer["current"]
        return out
    if kind == "success":
        return {"status": "success"}
    if kind == "error":
        return {"error": line.get("message", "")}
    return {"status": line.get("message", "")}  # warnings


def _pull_refusal(reference: str) -> str | None:
    """Why a pull fails before any progress (DMR: the registry's answer), or None."""
    if not refs.is_valid(reference):
        # DMR: `invalid model reference "<ref>": <parser error>`; the parser's words are UNCONFIRMED.
        return f'invalid model reference "{reference}": invalid reference format'
    if catalog.find(reference) is None:
        # Embedded mode has no registry: a model it does not ship is "not found" there. DMR wraps the
        # registry's error; the registry's own words (e.g. MANIFEST_UNKNOWN) are UNCONFIRMED.
        return "model not found"
    return None


def _pull(server: ModelServer) -> Callable[[Request], Any]:
    async def pull(request: Request) -> Response:
        """Progress as NDJSON status lines, ending with ``{"status":"success"}``.

        Deliberate difference: DMR ignores ``stream`` and always streams, which breaks the
        ``ollama`` client's default ``pull(stream=False)`` (it reads one JSON object); embedded
        mode honours ``"stream": false`` as Ollama does: one line, the last status.
        """
        got = await _request(request, "pull")
        if isinstance(got, Response):
            return got
        body, reference = got
        refusal = _pull_refusal(reference)
        if refusal is not None:
            message = f"Failed to pull model: error while pulling model: {refusal}"
            return _json({"error": message}, 500)
        shipped = catalog.find(reference)
        assert shipped is not None
        lines = (pull_status(json.loads(raw)) async for raw in server._pull_lines(reference, shipped, True))
        if body.get("stream") is False:
            statuses = [status async for status in lines]
            last = statuses[-1] if statuses else {}
            return _json(last, 500 if "error" in last else 200)
        return StreamingResponse(_ndjson(lines), media_type="application/x-ndjson",
                                 headers={"cache-control": "no-cache"})

    return pull


async def _ndjson(items: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    async for item in items:
        yield go_json(item)


# -- chat and generate ---------------------------------------------------------------------------------

# Ollama's option names → chat completions' (DMR's mapOllamaOptionsToOpenAI). `num_ctx`, `keep_alive`
# and `think` reconfigure the runner in DMR; embedded runners are fixed (context ≥ 8192, kept forever),
# so those are accepted and ignored.
_OPTIONS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "num_predict": "max_tokens",
            "stop": "stop", "seed": "seed", "presence_penalty": "presence_penalty",
            "frequency_penalty": "frequency_penalty"}


def _data_uri(image: str) -> str:
    """DMR's ``ensureDataURIPrefix``: raw base64 gets a data URI with a MIME type guessed from its start."""
    image = image.strip()
    if image.startswith(("data:", "http://", "https://")):
        return image
    mime = next((m for prefix, m in (("/9j/", "image/jpeg"), ("iVBOR", "image/png"), ("R0lG", "image/gif"))
                 if image.startswith(prefix)), "image/jpeg")
    return f"data:{mime};base64,{image}"


def _chat_message(message: dict[str, Any]) -> dict[str, Any]:
    """An Ollama message → a chat one (DMR's ``convertMessages``)."""
    out: dict[str, Any] = {"role": message.get("role", "")}
    content = message.get("content") or ""
    images = message.get("images") or []
    if images:
        parts = [{"type": "text", "text": content}] if content else []
        out["content"] = parts + [{"type": "image_url", "image_url": {"url": _data_uri(str(i))}} for i in images]
    else:
        out["content"] = content
    calls = message.get("tool_calls") or []
    if calls:
        out["tool_calls"] = [_chat_tool_call(call) for call in calls]
    if message.get("tool_call_id"):
        out["tool_call_id"] = message["tool_call_id"]
    return out


def _chat_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    if isinstance(function.get("arguments"), dict):
        function["arguments"] = json.dumps(function["arguments"], separators=(",", ":"))
    function.pop("index", None)
    return {"id": call.get("id", ""), "type": call.get("type") or "function", "function": function}


def ollama_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat tool calls → Ollama's (DMR's ``convertToolCallsToOllamaFormat``): no ``type``, the
    arguments as an object when they parse as one, and ``function.index`` = position in this list."""
    out = []
    for position, call in enumerate(calls):
        function = call.get("function") or {}
        arguments: Any = function.get("arguments", "")
        if isinstance(arguments, str) and arguments:
            try:
                parsed = json.loads(arguments)
                arguments = parsed if isinstance(parsed, dict) else arguments
            except ValueError:
                pass
        out.append({"id": call.get("id", ""),
                    "function": {"index": position, "name": function.get("name", ""), "arguments": arguments}})
    return out


def to_chat(body: dict[str, Any], model: str, generate: bool) -> dict[str, Any]:
    """The chat-completions body DMR builds from an ``/api/chat`` or ``/api/generate`` request."""
    if generate:
        messages = [{"role": "user", "content": body.get("prompt") or ""}]
    else:
        messages = [_chat_message(m) if isinstance(m, dict) else m for m in body.get("messages") or []]
    chat: dict[str, Any] = {"model": model, "messages": messages, "stream": body.get("stream") is not False}
    if not generate and body.get("tools"):
        chat["tools"] = body["tools"]
    given = body.get("options")
    options = given if isinstance(given, dict) else {}
    for ollama_name, chat_name in _OPTIONS.items():
        if ollama_name in options:
            chat[chat_name] = options[ollama_name]
    return chat


def chunk_line(chunk: dict[str, Any], model: str, generate: bool) -> dict[str, Any]:
    """One chat chunk as one NDJSON line (DMR's streaming writers: every chunk gives a line)."""
    delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
    if generate:
        line: dict[str, Any] = {"model": model, "created_at": go_time()}
        if delta.get("content"):
            line["response"] = delta["content"]
        if delta.get("reasoning_content"):
            line["thinking"] = delta["reasoning_content"]
        return {**line, "done": False}
    message: dict[str, Any] = {"role": "assistant", "content": delta.get("content") or ""}
    if delta.get("tool_calls"):
        message["tool_calls"] = ollama_tool_calls(delta["tool_calls"])
    if delta.get("reasoning_content"):
        message["thinking"] = delta["reasoning_content"]
    return {"model": model, "created_at": go_time(), "message": message, "done": False}


def done_line(model: str, generate: bool) -> dict[str, Any]:
    """DMR's last streamed line, written at the upstream ``[DONE]`` (a zero message for chat)."""
    if generate:
        return {"model": model, "created_at": go_time(), "done": True}
    return {"model": model, "created_at": go_time(), "message": {"role": "", "content": ""}, "done": True}


def final(done: Assembled, model: str, generate: bool) -> dict[str, Any]:
    """The one object of a non-streamed answer (DMR sends no ``done_reason`` and no token counts)."""
    if generate:
        line: dict[str, Any] = {"model": model, "created_at": go_time()}
        if done.text:
            line["response"] = done.text
        if done.reasoning:
            line["thinking"] = done.reasoning
        return {**line, "done": True}
    message: dict[str, Any] = {"role": "assistant", "content": done.text}
    if done.calls:
        calls = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                 for _, c in sorted(done.calls.items())]
        message["tool_calls"] = ollama_tool_calls(calls)
    if done.reasoning:
        message["thinking"] = done.reasoning
    return {"model": model, "created_at": go_time(), "message": message, "done": True}


def inference_error(exc: InferenceError) -> Response:
    """DMR's conversion of a failed chat completion: llama.cpp's JSON errors become ``{"error": message}``,
    DMR's own plain-text errors (model not found, model required) are passed on as they are."""
    if exc.kind == "not_found" or exc.message in ("model is required", "model unavailable") \
            or exc.message.startswith("unable to load runner"):
        return text_error(exc.message, exc.status)
    if exc.status >= 500:
        return crash_response(exc.message)
    message = str((exc.body or {}).get("error", {}).get("message", exc.message)) if exc.body else exc.message
    return _json({"error": message}, exc.status)


def _inference(server: ModelServer, generate: bool) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        got = await _request(request, "generate" if generate else "chat")
        if isinstance(got, Response):
            return got
        body, model = got
        if generate and not body.get("prompt"):
            return await _load_or_unload(server, body, model)
        chat = to_chat(body, model, generate)
        try:
            if chat["stream"]:
                chunks = await prefetched(server.chat_chunks(chat))
            else:
                collected = await collect(request, server.chat_chunks(chat))
        except InferenceError as exc:
            # Deliberate difference while streaming: DMR passes the status on but drops a non-SSE
            # error body (its writer keeps only `data:` lines); embedded mode keeps the body.
            return inference_error(exc)
        if not chat["stream"]:
            if collected is None:
                return Response(status_code=499)
            done = Assembled()
            for chunk in collected:
                done.add(chunk)
            return _json(final(done, model, generate))
        return StreamingResponse(_lines(chunks, model, generate), media_type="application/json")

    return endpoint


async def _lines(chunks: Chunks, model: str, generate: bool) -> AsyncIterator[str]:
    """NDJSON: a line per chat chunk, then the done line. The usage chunk chat_chunks adds is skipped:
    DMR does not ask llama.cpp for one, so DMR's stream has no such line."""

    try:
        async for chunk in chunks:
            if chunk.get("choices"):
                yield go_json(chunk_line(chunk, model, generate))
    except InferenceError as exc:  # mid-stream failure: Ollama's error line
        yield go_json({"error": str(exc)})
        return
    finally:
        await chunks.aclose()
    yield go_json(done_line(model, generate))


async def _load_or_unload(server: ModelServer, body: dict[str, Any], model: str) -> Response:
    """``/api/generate`` without a prompt: DMR unloads the model when ``keep_alive`` is zero *or absent*,
    and otherwise only (re)configures it; both answer ``{}``."""
    keep_alive = body.get("keep_alive")
    if keep_alive in (None, "", "0", "0s", "0m", 0):
        try:
            ids = {server.store.get(model).id}
        except StoreError:
            ids = set()  # DMR's scheduler unloads nothing and still answers 200
        if ids:
            await server.engine.unload(ids)
    return Response("{}", media_type="application/json")


def routes(server: ModelServer) -> list[Route]:
    """DMR's eight Ollama routes (``/api/embeddings`` is documented but not registered in DMR)."""
    return [
        Route("/api/version", version, methods=["GET"]),
        Route("/api/tags", _tags(server), methods=["GET"]),
        Route("/api/ps", _ps(server), methods=["GET"]),
        Route("/api/show", _show(server), methods=["POST"]),
        Route("/api/chat", _inference(server, generate=False), methods=["POST"]),
        Route("/api/generate", _inference(server, generate=True), methods=["POST"]),
        Route("/api/pull", _pull(server), methods=["POST"]),
        Route("/api/delete", _delete(server), methods=["DELETE"]),
    ]
