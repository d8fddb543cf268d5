"""Responses API ↔ chat completions, as DMR's ``pkg/responses`` (transform.go, api.go) translates them.

Pure functions over JSON values, so the unit tests need no server. Shapes follow DMR's Go
structs: fields tagged ``omitempty`` are left out when empty (``""``, ``0``, ``[]``, null), the
others are always present (``null`` when unset). ``compat`` is ``"current"`` (DMR's code after
2026-07-13) or ``"1.2.6"`` (the last release, which has no ``text``/``store``/``include`` … fields).
"""

from __future__ import annotations

import json
import re
import secrets
import string
from typing import Any

CURRENT, V126 = "current", "1.2.6"
UNSUPPORTED = "is not supported by Docker Model Runner Responses compatibility layer"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ID_CHARS = string.ascii_lowercase + string.digits


class BadRequest(ValueError):
    """A request DMR answers with 400 ``invalid_request`` and this message."""


def new_id(prefix: str) -> str:
    """DMR's ids: a prefix (``resp_``, ``msg_``, ``item_``, ``call_``) and 24 of ``[a-z0-9]``."""
    return prefix + "".join(secrets.choice(_ID_CHARS) for _ in range(24))


# -- Go's json.Unmarshal type checks --------------------------------------------------------------
# A spec is a Go type name ("string", "bool", "float64", "int", "any") or ("[]", name, spec),
# ("map", name, spec) or ("struct", name, {field: spec}).

_TOOL = ("struct", "responses.Tool", {
    "type": "string", "name": "string", "description": "string", "parameters": "any",
    "function": ("struct", "responses.FunctionDef", {"name": "string", "description": "string", "parameters": "any"}),
})
_TEXT = ("struct", "responses.ResponseTextConfig", {
    "format": ("struct", "responses.ResponseTextFormat", {
        "type": "string", "name": "string", "description": "string", "schema": "any", "strict": "bool"}),
    "verbosity": "string",
})
_FIELDS_126: dict[str, Any] = {
    "model": "string", "input": "any", "instructions": "string", "previous_response_id": "string",
    "tools": ("[]", "[]responses.Tool", _TOOL), "tool_choice": "any", "parallel_tool_calls": "bool",
    "temperature": "float64", "top_p": "float64", "max_output_tokens": "int", "stream": "bool",
    "metadata": ("map", "map[string]string", "string"), "reasoning_effort": "string", "user": "string",
}
_FIELDS_CURRENT: dict[str, Any] = {
    **_FIELDS_126, "store": "bool", "text": _TEXT, "include": ("[]", "[]string", "string"), "stream_options": "any",
    "top_logprobs": "int", "truncation": "string", "background": "bool", "conversation": "any", "prompt": "any",
    "service_tier": "string", "safety_identifier": "string",
}
REQUEST = {V126: ("struct", "responses.CreateRequest", _FIELDS_126),
           CURRENT: ("struct", "responses.CreateRequest", _FIELDS_CURRENT)}
_CONTENT_PART = ("struct", "responses.InputContentPart", {
    "type": "string", "text": "string", "image_url": "string", "file_id": "string", "file_data": "string",
    "filename": "string"})
_INPUT_ITEM = ("struct", "responses.InputItem", {
    "type": "string", "role": "string", "content": "any", "call_id": "string", "output": "string", "id": "string",
    "name": "string", "arguments": "string"})


_JSON_KINDS: dict[type, str] = {str: "string", list: "array", dict: "object"}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return _JSON_KINDS.get(type(value), "null")


def _type_name(spec: Any) -> str:
    return spec if isinstance(spec, str) else spec[1]


def go_type_error(value: Any, spec: Any, struct: str = "", path: tuple[str, ...] = ()) -> str | None:
    """The message Go's ``json.Unmarshal`` gives for the first value of the wrong type, or None.

    Same wording as Go (``json: cannot unmarshal number into Go struct field CreateRequest.model of
    type string``); Go also matches field names case-insensitively, which this does not.
    """
    if value is None or spec == "any":
        return None
    kind = _json_kind(value)
    expected = {"string": "string", "bool": "bool", "float64": "number", "int": "number"}.get(spec) if isinstance(
        spec, str) else {"[]": "array", "map": "object", "struct": "object"}[spec[0]]
    if kind == expected and spec == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
        kind = f"number {value}"
    elif kind == expected:
        return _go_type_error_inside(value, spec, struct, path)
    where = f"Go struct field {struct}.{'.'.join(path)}" if path else "Go value"
    return f"json: cannot unmarshal {kind} into {where} of type {_type_name(spec)}"


def _go_type_error_inside(value: Any, spec: Any, struct: str, path: tuple[str, ...]) -> str | None:
    if isinstance(spec, str):
        return None
    if spec[0] == "[]":
        return next((e for v in value if (e := go_type_error(v, spec[2], struct, path))), None)
    if spec[0] == "map":
        return next((e for v in value.values() if (e := go_type_error(v, spec[2], struct, path))), None)
    inner = spec[1].removeprefix("responses.")
    return next((e for k, v in value.items()
                 if k in spec[2] and (e := go_type_error(v, spec[2][k], inner, (*path, k)))), None)


# -- request: Responses → chat completions ------------------------------------------------------------

def unsupported_field(body: dict[str, Any]) -> str | None:
    """DMR's (current) refusal of OpenAI-hosted features it cannot offer (handler.go)."""
    if body.get("include"):
        return f"include {UNSUPPORTED}"
    if body.get("stream_options") is not None:
        return f"stream_options {UNSUPPORTED}"
    if body.get("top_logprobs") is not None:
        return f"top_logprobs {UNSUPPORTED}"
    if body.get("truncation") not in (None, "", "disabled"):
        return f"truncation value {_go_quote(body['truncation'])} {UNSUPPORTED}"
    if body.get("background"):
        return "background responses are not supported by Docker Model Runner Responses compatibility layer"
    if body.get("conversation") is not None:
        return f"conversation {UNSUPPORTED}; use previous_response_id instead"
    if body.get("prompt") is not None:
        return f"prompt {UNSUPPORTED}"
    for field in ("service_tier", "safety_identifier"):
        if body.get(field):
            return f"{field} {UNSUPPORTED}"
    return None


def _go_quote(text: str) -> str:
    """Go's ``%q`` for ordinary text (JSON string quoting is the same for printable characters)."""
    return json.dumps(text, ensure_ascii=False)


def response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    """``text.format`` → chat ``response_format`` (transform.go ``responseFormatFromText``)."""
    fmt = (text or {}).get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") or ""
    if kind in ("", "text"):
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise BadRequest(f"unsupported text.format.type {_go_quote(kind)}")
    name = fmt.get("name") or ""
    if not name:
        raise BadRequest("text.format.name is required when text.format.type is json_schema")
    if not _NAME.match(name):
        raise BadRequest("text.format.name must contain only letters, numbers, underscores, and dashes, "
                         "with a maximum length of 64")
    if "schema" not in fmt:
        raise BadRequest("text.format.schema is required when text.format.type is json_schema")
    if not isinstance(fmt["schema"], dict):
        raise BadRequest("text.format.schema must be a JSON object")
    schema: dict[str, Any] = {"name": name}
    if fmt.get("description"):
        schema["description"] = fmt["description"]
    schema["schema"] = fmt["schema"]
    if fmt.get("strict") is not None:
        schema["strict"] = fmt["strict"]
    return {"type": "json_schema", "json_schema": schema}


def chat_tools(tools: list[dict[str, Any]] | None, compat: str) -> list[dict[str, Any]]:
    """Function tools, flat or nested, as chat tools. Others: 400 (current) or dropped (1.2.6)."""
    out = []
    for tool in tools or []:
        if tool.get("type") != "function":
            if compat == V126:
                continue
            raise BadRequest(f"tool type {_go_quote(tool.get('type') or '')} {UNSUPPORTED}")
        source = tool["function"] if tool.get("function") is not None else tool
        function: dict[str, Any] = {"name": source.get("name") or ""}
        if source.get("description"):
            function["description"] = source["description"]
        if source.get("parameters") is not None:
            function["parameters"] = source["parameters"]
        out.append({"type": "function", "function": function})
    return out


def echo_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The request's tools as DMR echoes them in the Response (its ``Tool`` struct: other keys drop)."""
    if tools is None:
        return None
    keep = ("type", "name", "description", "parameters", "function")
    out = []
    for tool in tools:
        echoed = {k: tool[k] for k in keep if tool.get(k) not in (None, "")}
        if isinstance(echoed.get("function"), dict):
            fn = echoed["function"]
            echoed["function"] = {"name": fn.get("name") or "",
                                  **{k: fn[k] for k in ("description", "parameters") if fn.get(k) not in (None, "")}}
        out.append({"type": tool.get("type") or "", **echoed})
    return out


def echo_text(text: dict[str, Any] | None) -> dict[str, Any] | None:
    """``text`` as DMR echoes it (its ``ResponseTextConfig`` struct: unknown keys drop, empty ones too)."""
    if text is None:
        return None
    fmt = text.get("format")
    out: dict[str, Any] = {}
    if fmt is not None:
        keep = ("name", "description", "schema", "strict")
        out["format"] = {"type": fmt.get("type") or "", **{k: fmt[k] for k in keep if fmt.get(k) not in (None, "")}}
    if text.get("verbosity"):
        out["verbosity"] = text["verbosity"]
    return out


def input_messages(value: Any, present: bool) -> list[dict[str, Any]]:
    """``input`` (a string, or items) → chat messages (transform.go ``parseInput``).

    DMR quirk kept: any item with a ``call_id`` becomes a ``tool`` message, so a ``function_call``
    item of the history turns into an empty tool result rather than an assistant tool call.
    """
    if not present:
        return []
    if value is None or isinstance(value, str):
        return [{"role": "user", "content": value or ""}]
    error = go_type_error(value, ("[]", "[]responses.InputItem", _INPUT_ITEM))
    if error:
        raise BadRequest(f"failed to parse input: input must be a string or array of items: {error}")
    messages = []
    for item in value:
        if item.get("type") == "function_call_output" or item.get("call_id"):
            messages.append({"role": "tool", "content": item.get("output") or "", "tool_call_id": item.get("call_id")})
        elif item.get("role"):
            messages.append({"role": item["role"], "content": _content(item["content"]) if "content" in item else None})
        elif "content" in item:
            messages.append({"role": "user", "content": _content(item["content"])})
    for message in messages:
        if not message.get("tool_call_id"):
            message.pop("tool_call_id", None)
    return messages


def _content(value: Any) -> Any:
    """A message's content: a string, or input parts → chat parts (``parseContent``; others drop)."""
    if value is None or isinstance(value, str):
        return value or ""
    error = go_type_error(value, ("[]", "[]responses.InputContentPart", _CONTENT_PART))
    if error:
        raise BadRequest(f"failed to parse input: content must be string or array: {error}")
    parts = []
    for part in value:
        if part.get("type") in ("input_text", "text"):
            parts.append({"type": "text", **({"text": part["text"]} if part.get("text") else {})})
        elif part.get("type") in ("input_image", "image_url"):
            parts.append({"type": "image_url", "image_url": {"url": part.get("image_url") or ""}})
    return parts


def history(previous: dict[str, Any], lookup: Any) -> list[dict[str, Any]]:
    """The chat messages a stored response stands for: its predecessors', then its own output.

    As DMR (``getConversationHistory``): only the outputs are stored, so earlier user turns are not
    replayed; a predecessor that expired is skipped.
    """
    messages: list[dict[str, Any]] = []
    before = previous.get("previous_response_id")
    if before and (older := lookup(before)) is not None:
        messages += history(older, lookup)
    for item in previous.get("output") or []:
        if item["type"] == "message":
            text = "".join(p.get("text", "") for p in item.get("content", []) if p["type"] == "output_text")
            messages.append({"role": item.get("role", ""), "content": text})
        elif item["type"] == "function_call":
            messages.append({"role": "assistant", "content": None, "tool_calls": [{
                "id": item.get("call_id", ""), "type": "function",
                "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "")}}]})
    return messages


def chat_request(body: dict[str, Any], compat: str, lookup: Any) -> dict[str, Any]:
    """The chat completions body DMR sends upstream (``TransformRequestToChatCompletion``).

    ``lookup(id)`` returns a stored response or None. Raises ``BadRequest`` in DMR's order:
    ``text.format``, tools, ``previous_response_id``, ``input``.
    """
    chat: dict[str, Any] = {"model": body["model"]}
    fmt = response_format(body.get("text")) if compat == CURRENT else None
    tools = chat_tools(body.get("tools"), compat)
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    previous_id = body.get("previous_response_id")
    if previous_id:
        previous = lookup(previous_id)
        if previous is None and compat == CURRENT:
            raise BadRequest(f"previous_response_id {_go_quote(previous_id)} was not found")
        if previous is not None:  # v1.2.6 ignored an unknown id
            messages += history(previous, lookup)
    messages += input_messages(body.get("input"), "input" in body)
    chat["messages"] = messages
    if tools:
        chat["tools"] = tools
    for source, target in (("tool_choice", "tool_choice"), ("temperature", "temperature"), ("top_p", "top_p"),
                           ("max_output_tokens", "max_tokens")):
        if body.get(source) is not None:
            chat[target] = body[source]
    if body.get("stream"):
        chat["stream"] = True
    if body.get("user"):
        chat["user"] = body["user"]
    if body.get("parallel_tool_calls") is not None:
        chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    if fmt:
        chat["response_format"] = fmt
    return chat


# -- the Response object ------------------------------------------------------------------------------

def _go_number(value: Any) -> Any:
    """A float64 as Go writes it: ``1.0`` → ``1``."""
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 1e21 else value


def new_response(body: dict[str, Any], compat: str, created_at: int) -> dict[str, Any]:
    """An in-progress Response echoing the request (``NewResponse`` plus the handler's copies).

    Keys in the Go struct's order; ``output_text``, ``finish_reason``, ``store`` and ``text`` are
    ``omitempty`` and only appear once set (see ``public``).
    """
    store = body.get("store") is not False
    return {
        "id": new_id("resp_"), "object": "response", "created_at": created_at, "model": body["model"],
        "status": "in_progress", "output": [], "output_text": "", "error": None, "incomplete_details": None,
        "finish_reason": "", "instructions": body.get("instructions") or None, "metadata": body.get("metadata"),
        "parallel_tool_calls": body.get("parallel_tool_calls"), "temperature": _go_number(body.get("temperature")),
        "tool_choice": body.get("tool_choice"), "tools": echo_tools(body.get("tools")),
        "top_p": _go_number(body.get("top_p")), "max_output_tokens": body.get("max_output_tokens"),
        "store": store if compat == CURRENT else None,
        "text": echo_text(body.get("text")) if compat == CURRENT else None,
        "previous_response_id": body.get("previous_response_id") or None, "reasoning": None, "usage": None,
        "user": body.get("user") or None, "reasoning_effort": body.get("reasoning_effort") or None,
    }


def public(response: dict[str, Any]) -> dict[str, Any]:
    """The Response as DMR's JSON encoder writes it (its ``omitempty`` fields dropped when empty)."""
    return {k: v for k, v in response.items()
            if not (k in ("output_text", "finish_reason", "store", "text") and v in ("", None))}


def usage(chat_usage: dict[str, Any] | None) -> dict[str, int] | None:
    """Chat usage → Responses usage."""
    if not chat_usage:
        return None
    return {"input_tokens": int(chat_usage.get("prompt_tokens") or 0),
            "output_tokens": int(chat_usage.get("completion_tokens") or 0),
            "total_tokens": int(chat_usage.get("total_tokens") or 0)}


def text_part(text: str) -> dict[str, Any]:
    """An ``output_text`` part; DMR's ``text`` and ``annotations`` are omitempty, so "" and [] vanish."""
    return {"type": "output_text", **({"text": text} if text else {})}


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "content": [text_part(text)], "status": status}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    """A ``function_call`` output item (``name``/``arguments`` omitempty like the rest of OutputItem)."""
    item: dict[str, Any] = {"id": item_id, "type": "function_call", "status": status, "call_id": call_id}
    if name:
        item["name"] = name
    if arguments:
        item["arguments"] = arguments
    return {k: item[k] for k in ("id", "type", "status", "call_id", "name", "arguments") if k in item}


def collect(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What a non-streaming chat completion would hold: text, tool calls (by ``index``), usage."""
    text: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    chat_usage = None
    for chunk in chunks:
        chat_usage = chunk.get("usage") or chat_usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or "")
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(int(call.get("index") or 0), {"id": "", "name": "", "arguments": ""})
                fn = call.get("function") or {}
                slot["id"] = slot["id"] or call.get("id") or ""
                slot["name"] = slot["name"] or fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""
    return {"content": "".join(text), "tool_calls": [calls[i] for i in sorted(calls)], "usage": chat_usage}


def complete(response: dict[str, Any], collected: dict[str, Any]) -> dict[str, Any]:
    """Fill a Response from a whole chat answer (``TransformChatCompletionToResponse``).

    As DMR: function calls first, then the message; no ``finish_reason`` in the non-stream answer.
    """
    response["status"] = "completed"
    response["output"] = [call_item(new_id("item_"), c["id"], c["name"], c["arguments"], "completed")
                          for c in collected["tool_calls"]]
    if collected["content"]:
        response["output"].append(message_item(new_id("msg_"), collected["content"], "completed"))
        response["output_text"] = collected["content"]
    response["usage"] = usage(collected["usage"])
    return response
