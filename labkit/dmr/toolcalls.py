"""Function calling for a model whose chat template knows no tools (SmolLM2-135M's does not).

DMR runs llama.cpp with ``--jinja`` and lets the model's own template render ``tools``
(docs/dmr-agent-apis.md §4). SmolLM2's template has no tool syntax, so embedded mode
renders tools itself, in the Hermes/Qwen2.5 convention most small instruct models have seen:

* the tools, one JSON object per line inside ``<tools></tools>``, appended to the system message;
* a call is ``<tool_call>\\n{"name": "NAME", "arguments": {…}}\\n</tool_call>`` in the answer;
* earlier assistant ``tool_calls`` are rendered back in that form, and ``role: "tool"`` results
  as a user turn of ``<tool_response>\\n…\\n</tool_response>`` blocks (consecutive ones merged).

``tool_choice`` ``required`` or a named function constrains decoding with a GBNF grammar built
from the tools' JSON schemas, so even the 135M model returns a well-formed call to an allowed
tool. Everything here is pure data in, data out (picklable for the engine process) except
``gbnf_*``, which use llama-cpp-python's schema converter (imported lazily: the HTTP front
never loads llama.cpp).
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Generator, Iterator
from typing import Any

START, END = "<tool_call>", "</tool_call>"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"  # SmolLM2's template
_ID_CHARS = string.ascii_letters + string.digits


class ToolError(ValueError):
    """A bad ``tools``/``tool_choice``/message field (params turns it into its 400)."""


# -- validation -------------------------------------------------------------------------------


def functions(tools: Any) -> list[dict[str, Any]]:
    """The ``function`` objects of an OpenAI ``tools`` array (``name``, ``description``, ``parameters``)."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ToolError("'tools' must be an array of function tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise ToolError(f"tools[{i}]: only tools of type \"function\" are supported")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise ToolError(f"tools[{i}].function.name is required and must be a string")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise ToolError(f"tools[{i}].function.parameters must be a JSON schema object")
        clean = {"name": function["name"]}
        if isinstance(function.get("description"), str):
            clean["description"] = function["description"]
        clean["parameters"] = parameters if parameters is not None else {"type": "object", "properties": {}}
        out.append(clean)
    return out


def choice(value: Any, names: list[str]) -> str:
    """``auto``, ``none``, ``required`` or ``function:NAME`` for a ``tool_choice`` value."""
    if value is None:
        return "auto" if names else "none"
    if value in ("auto", "none", "required"):
        if value == "required" and not names:
            raise ToolError("tool_choice \"required\" needs at least one tool in 'tools'")
        return str(value)
    if isinstance(value, dict) and value.get("type") == "function":
        # OpenAI chat nests the name in `function`; the Responses API (passed on unchanged) has it flat
        name = value["function"].get("name") if isinstance(value.get("function"), dict) else value.get("name")
        if not isinstance(name, str) or name not in names:
            raise ToolError(f"tool_choice names function {json.dumps(name)}, which is not in 'tools'")
        return f"function:{name}"
    raise ToolError("Invalid tool_choice: must be \"auto\", \"none\", \"required\" or "
                    "{\"type\": \"function\", \"function\": {\"name\": …}}")


# -- rendering --------------------------------------------------------------------------------


def system_block(tools: list[dict[str, Any]]) -> str:
    """The tool list and the calling convention, as Qwen2.5's template writes them."""
    lines = "\n".join(json.dumps({"type": "function", "function": t}, ensure_ascii=False) for t in tools)
    return ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n"
            f"<tools>\n{lines}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n"
            f"{START}\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n{END}")


def call_text(name: str, arguments: Any) -> str:
    """One call in the convention (arguments as an object when they parse, else as given)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            pass
    return f"{START}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{END}"


def _assistant(message: dict[str, Any], content: str, index: int) -> str:
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise ToolError(f"messages[{index}].tool_calls must be an array")
    texts = [content] if content else []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ToolError(f"messages[{index}].tool_calls[{j}].function.name is required")
        texts.append(call_text(function["name"], function.get("arguments", "{}")))
    return "\n".join(texts)


def render(messages: list[tuple[dict[str, Any], str]], tools: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Chat messages with plain string contents for the GGUF template: ``messages`` pairs each
    request message with its text content; ``tools`` are the offered tools (none: not offered)."""
    out: list[dict[str, str]] = []
    for index, (message, content) in enumerate(messages):
        role = message["role"]
        if role == "assistant" and message.get("tool_calls"):
            out.append({"role": "assistant", "content": _assistant(message, content, index)})
        elif role == "tool":
            block = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1].get("_tool"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool": "1"})
        else:
            out.append({"role": role, "content": content})
    for message in out:
        message.pop("_tool", None)
    if tools:
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{system_block(tools)}"
        else:
            out.insert(0, {"role": "system", "content": f"{DEFAULT_SYSTEM}\n\n{system_block(tools)}"})
    return out


# -- grammars (run in the engine process) -----------------------------------------------------


def _converter() -> Any:
    from llama_cpp.llama_grammar import SchemaConverter

    return SchemaConverter(prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False,
                           raw_pattern=False)


def gbnf_tool_call(tools: list[dict[str, Any]], allowed: list[str]) -> str:
    """A grammar for exactly one call, ``<tool_call>\\n{"name": …, "arguments": …}\\n</tool_call>``, to one
    of the ``allowed`` tools, its arguments matching that tool's parameter schema.

    One call only: with two or more allowed, the 135M model tends to repeat the first call until
    ``max_tokens``. Raises ``ToolError`` for a schema llama.cpp's converter cannot turn into GBNF.
    """
    converter = _converter()
    variants = []
    for i, tool in enumerate(t for t in tools if t["name"] in allowed):
        try:
            parameters = converter.resolve_refs(json.loads(json.dumps(tool["parameters"])), f"tool-{i}")
        except Exception as exc:  # noqa: BLE001 - the converter raises bare Exceptions
            raise ToolError(f"tool {tool['name']!r}: unusable parameters schema: {exc}") from None
        variants.append({"type": "object", "properties": {"name": {"const": tool["name"]}, "arguments": parameters},
                         "required": ["name", "arguments"]})
    schema = variants[0] if len(variants) == 1 else {"oneOf": variants}
    try:
        converter.visit(schema, "call")
        rules = converter.format_grammar()
    except Exception as exc:  # noqa: BLE001
        raise ToolError(f"unusable tool parameters schema: {exc}") from None
    return f'root ::= "{START}\\n" call "\\n{END}"\n{rules}'


def gbnf_json(schema: dict[str, Any] | None) -> str:
    """A grammar for ``response_format``: any JSON object, or one matching ``schema``."""
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if schema is None:
        return JSON_GBNF
    try:
        return str(json_schema_to_gbnf(json.dumps(schema)))
    except Exception as exc:  # noqa: BLE001
        raise ToolError(f"response_format: unusable JSON schema: {exc}") from None


# -- parsing the answer -----------------------------------------------------------------------


def call_id() -> str:
    """An OpenAI-style call id (``call_`` and 24 letters and digits)."""
    return "call_" + "".join(secrets.choice(_ID_CHARS) for _ in range(24))


def parse_call(text: str, names: list[str]) -> dict[str, Any] | None:
    """The ``function`` object of one call's JSON text, or None when it is not a call to a known tool."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):  # some models quote the arguments object
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {"name": value["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}


def _held_back(text: str) -> int:
    """How many trailing characters of ``text`` may be the start of ``<tool_call>``."""
    for size in range(min(len(text), len(START) - 1), 0, -1):
        if START.startswith(text[-size:]):
            return size
    return 0


class CallParser:
    """Splits streamed text into plain text and complete tool calls (``auto`` and constrained alike).

    ``feed`` returns the events a new piece of text completes: ``("text", str)`` or
    ``("call", {"index", "function"})``; text that may be the start of a ``<tool_call>`` tag is held back
    until it is known. ``finish`` flushes the rest (an unclosed call that parses still counts).
    """

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.buffer = ""
        self.in_call = False
        self.calls = 0

    def feed(self, text: str) -> list[tuple[str, Any]]:
        self.buffer += text
        events: list[tuple[str, Any]] = []
        while True:
            if not self.in_call:
                start = self.buffer.find(START)
                if start < 0:
                    keep = _held_back(self.buffer)
                    cut = len(self.buffer) - keep
                    if cut:
                        events.append(("text", self.buffer[:cut]))
                    self.buffer = self.buffer[cut:]
                    return events
                if start:
                    events.append(("text", self.buffer[:start]))
                self.buffer, self.in_call = self.buffer[start + len(START):], True
            end = self.buffer.find(END)
            if end < 0:
                return events
            events.append(self._close(self.buffer[:end], START + self.buffer[:end + len(END)]))
            self.buffer, self.in_call = self.buffer[end + len(END):], False

    def finish(self) -> list[tuple[str, Any]]:
        rest, self.buffer = self.buffer, ""
        if not rest:
            return []
        if self.in_call:
            self.in_call = False
            return [self._close(rest, START + rest)]
        return [("text", rest)]

    def _close(self, body: str, raw: str) -> tuple[str, Any]:
        function = parse_call(body.strip(), self.names)
        if function is None:
            return ("text", raw)  # not a usable call: the client sees what the model wrote
        self.calls += 1
        return ("call", {"index": self.calls - 1, "function": function})


def _chunk_like(chunk: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {**chunk, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def stream_calls(chunks: Iterator[dict[str, Any]], names: list[str]) -> Generator[dict[str, Any], None, None]:
    """llama-cpp-python's chat chunks with ``<tool_call>`` blocks turned into OpenAI ``delta.tool_calls``.

    A call is sent in one chunk (``index``, ``id``, ``type``, ``function.name`` and the whole
    ``function.arguments``) when its closing tag arrives; the finish reason becomes ``tool_calls``.
    """
    parser = CallParser(names)
    last: dict[str, Any] | None = None
    try:
        for chunk in chunks:
            last = chunk
            choice_ = chunk["choices"][0] if chunk.get("choices") else None
            if choice_ is None:
                yield chunk
                continue
            delta = choice_.get("delta") or {}
            if choice_.get("finish_reason") is not None:
                yield from _events(chunk, parser.finish())
                reason = choice_["finish_reason"]
                yield _chunk_like(chunk, delta, "tool_calls" if parser.calls and reason == "stop" else reason)
                return
            if "content" in delta and delta["content"]:
                yield from _events(chunk, parser.feed(delta["content"]))
                if len(delta) > 1:
                    yield _chunk_like(chunk, {k: v for k, v in delta.items() if k != "content"})
            else:
                yield chunk
        if last is not None:
            yield from _events(last, parser.finish())
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _events(chunk: dict[str, Any], events: list[tuple[str, Any]]) -> Iterator[dict[str, Any]]:
    for kind, value in events:
        if kind == "text":
            yield _chunk_like(chunk, {"content": value})
        else:
            call = {"index": value["index"], "id": call_id(), "type": "function", "function": value["function"]}
            yield _chunk_like(chunk, {"tool_calls": [call]})
