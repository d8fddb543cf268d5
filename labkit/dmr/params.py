"""OpenAI-style request bodies → llama-cpp-python arguments, with llama-server's defaults.

DMR forwards the body unchanged to llama.cpp's server (docs/sbx-dmr-facts.md §2.6), so sampling defaults
and the handling of `temperature`, `top_p`, `max_tokens`, `stop`, `seed` … are llama-server's.
A wrong value is answered the way llama-server answers it: 400 with a JSON error object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import toolcalls

# llama-server's sampling defaults (its `common_params_sampling`).
DEFAULTS: dict[str, float | int] = {
    "temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0,
    "presence_penalty": 0.0, "frequency_penalty": 0.0,
}


# Deviation from llama-server, which generates until end-of-turn or a full context when a
# request sets no limit: the 135M model can loop for minutes (8192 tokens) that way, e.g. in
# `docker model run`. Embedded mode stops such a request after this many tokens; a client
# that wants more says so with `max_tokens` (-1: no limit, llama-server's behaviour).
UNSET_MAX_TOKENS = 512


class BadParam(ValueError):
    """A request field has the wrong type or value; the message names it."""


@dataclass(frozen=True)
class Options:
    """What the HTTP layer needs besides the llama-cpp-python arguments."""

    stream: bool = False
    include_usage: bool = False


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadParam(f"'{key}' must be a number")
    return float(value)


def _integer(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadParam(f"'{key}' must be an integer")
    return value


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    """The sampling fields every generation endpoint shares."""
    args: dict[str, Any] = {
        "temperature": _number(body, "temperature", float(DEFAULTS["temperature"])),
        "top_p": _number(body, "top_p", float(DEFAULTS["top_p"])),
        "min_p": _number(body, "min_p", float(DEFAULTS["min_p"])),
        "repeat_penalty": _number(body, "repeat_penalty", float(DEFAULTS["repeat_penalty"])),
        "presence_penalty": _number(body, "presence_penalty", float(DEFAULTS["presence_penalty"])),
        "frequency_penalty": _number(body, "frequency_penalty", float(DEFAULTS["frequency_penalty"])),
    }
    top_k = _integer(body, "top_k")
    args["top_k"] = int(DEFAULTS["top_k"]) if top_k is None else top_k
    # `max_completion_tokens` is OpenAI's newer name, `n_predict` llama-server's own; -1 or none: no limit.
    limit = next((_integer(body, k) for k in ("max_completion_tokens", "max_tokens", "n_predict")
                  if body.get(k) is not None), None)
    if limit is not None and limit == 0:
        raise BadParam("'max_tokens' must be at least 1 (or -1 for no limit)")
    if limit is None:
        limit = UNSET_MAX_TOKENS
    args["max_tokens"] = None if limit < 0 else limit
    seed = _integer(body, "seed")
    args["seed"] = None if seed is None or seed < 0 else seed
    stop = body.get("stop")
    if stop is None:
        args["stop"] = []
    elif isinstance(stop, str):
        args["stop"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        args["stop"] = list(stop)
    else:
        raise BadParam("'stop' must be a string or a list of strings")
    bias = body.get("logit_bias")
    if bias is not None:
        if not isinstance(bias, dict):
            raise BadParam("'logit_bias' must be an object of token id → bias")
        try:
            args["logit_bias"] = {int(k): float(v) for k, v in bias.items()}
        except (TypeError, ValueError):
            raise BadParam("'logit_bias' keys must be token ids and values numbers") from None
    n = _integer(body, "n")
    if n is not None and n != 1:
        raise BadParam("Only one completion choice is allowed")
    return args


def _options(body: dict[str, Any]) -> Options:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadParam("'stream' must be a boolean")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise BadParam("'stream_options' must be an object")
    return Options(stream=stream, include_usage=bool(stream_options.get("include_usage")))


def _text_content(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise BadParam(f"messages[{index}]: only text content parts are supported by this model")
            texts.append(part["text"])
        return "".join(texts)
    raise BadParam(f"messages[{index}].content must be a string or a list of content parts")


def chat(body: dict[str, Any], model_name: str) -> tuple[dict[str, Any], Options]:
    """Arguments for ``Llama.create_chat_completion``, plus the engine's own keys (picklable data):
    ``tool_call`` (the tools to parse calls of, and a grammar spec when the choice forces a call)
    and ``grammar`` (a ``response_format`` schema); ``engine.py`` turns them into a grammar."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadParam("'messages' is required and must be a non-empty array")
    pairs = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadParam(f"messages[{i}] must be an object with a 'role'")
        pairs.append((message, _text_content(message.get("content"), i)))
    try:
        tools = toolcalls.functions(body.get("tools"))
        names = [t["name"] for t in tools]
        tool_choice = toolcalls.choice(body.get("tool_choice"), names)
        offered = tools if tool_choice != "none" else []
        clean = toolcalls.render(pairs, offered)
    except toolcalls.ToolError as exc:
        raise BadParam(str(exc)) from None
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise BadParam("'parallel_tool_calls' must be a boolean")
    args: dict[str, Any] = {"messages": clean, "model": model_name, **_sampling(body)}
    if offered:
        forced = names if tool_choice == "required" else [tool_choice[9:]] if tool_choice != "auto" else []
        args["tool_call"] = {"names": names, "tools": tools if forced else [], "forced": forced}
    response_format = body.get("response_format")
    if response_format is not None:
        grammar = _response_grammar(response_format)
        if grammar is not None and not (offered and args["tool_call"]["forced"]):
            args["grammar"] = grammar
    return args, _options(body)


def _response_grammar(response_format: Any) -> dict[str, Any] | None:
    """``response_format`` as the engine's grammar spec: ``{"schema": …}`` (None: any JSON object).

    llama-cpp-python honours only its own ``{"type": "json_object", "schema": …}`` spelling and
    ignores OpenAI's ``json_schema``, so the grammar is built here for both.
    """
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise BadParam("'response_format' must be {\"type\": \"text\" | \"json_object\" | \"json_schema\"}")
    if kind == "text":
        return None
    schema = response_format.get("schema")
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise BadParam("'response_format.json_schema' must be an object with a 'schema'")
        schema = spec.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise BadParam("'response_format' schema must be a JSON schema object")
    return {"schema": schema}


def completion(body: dict[str, Any], model_name: str) -> tuple[dict[str, Any], Options]:
    """Arguments for ``Llama.create_completion``."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        pass  # a list of token ids
    elif not isinstance(prompt, str):
        raise BadParam("'prompt' is required and must be a string")
    return {"prompt": prompt, "model": model_name, **_sampling(body)}, _options(body)


def embedding(body: dict[str, Any]) -> list[str]:
    """The texts of an embeddings request."""
    texts = body.get("input", body.get("content"))
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts):
        return list(texts)
    raise BadParam("'input' is required and must be a string or a list of strings")
