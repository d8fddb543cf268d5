"""The pure parts of tool calling, response_format and `configure`: validation, rendering, parsing."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from labkit.dmr import configure, params, toolcalls
from labkit.dmr.engine import ContextOverflow, chat_context

pytestmark = pytest.mark.fast

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}
USER = [{"role": "user", "content": "hi"}]


def test_choice_values() -> None:
    names = ["get_weather", "add"]
    assert toolcalls.choice(None, names) == "auto" and toolcalls.choice(None, []) == "none"
    assert toolcalls.choice("required", names) == "required"
    assert toolcalls.choice({"type": "function", "function": {"name": "add"}}, names) == "function:add"
    assert toolcalls.choice({"type": "function", "name": "add"}, names) == "function:add"  # Responses' spelling
    for bad in ("sometimes", {"type": "function", "function": {"name": "nope"}}, 3):
        with pytest.raises(toolcalls.ToolError):
            toolcalls.choice(bad, names)
    with pytest.raises(toolcalls.ToolError, match="required"):
        toolcalls.choice("required", [])


@pytest.mark.parametrize("tools", [{"a": 1}, [{"type": "web_search"}], [{"type": "function", "function": {}}],
                                   [{"type": "function", "function": {"name": "x", "parameters": "no"}}]])
def test_bad_tools_are_bad_params(tools: object) -> None:
    with pytest.raises(params.BadParam):
        params.chat({"messages": USER, "tools": tools}, "m")


def test_params_carry_plain_data_for_the_engine() -> None:
    args, _ = params.chat({"messages": USER, "tools": [WEATHER, ADD], "tool_choice": "required"}, "m")
    assert args["tool_call"]["forced"] == ["get_weather", "add"]
    pickle.dumps(args)  # crosses to the engine process
    args, _ = params.chat({"messages": USER, "tools": [WEATHER], "tool_choice": "none"}, "m")
    assert "tool_call" not in args and args["messages"] == USER  # not offered: the prompt is unchanged
    args, _ = params.chat({"messages": USER, "tools": [WEATHER]}, "m")
    assert args["tool_call"] == {"names": ["get_weather"], "tools": [], "forced": []}
    assert args["messages"][0]["role"] == "system" and "<tools>" in args["messages"][0]["content"]


def test_response_format_becomes_a_grammar_spec() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    rf = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    assert params.chat({"messages": USER, "response_format": rf}, "m")[0]["grammar"] == {"schema": schema}
    assert params.chat({"messages": USER, "response_format": {"type": "json_object"}}, "m")[0]["grammar"] == {
        "schema": None}
    assert "grammar" not in params.chat({"messages": USER, "response_format": {"type": "text"}}, "m")[0]
    with pytest.raises(params.BadParam):
        params.chat({"messages": USER, "response_format": {"type": "json_schema", "json_schema": 3}}, "m")


def test_render_history_with_calls_and_results() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21 C"}]},
    ]
    args, _ = params.chat({"messages": messages, "tools": [WEATHER]}, "m")
    out = args["messages"]
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert out[0]["content"].startswith("Be brief.\n\n# Tools") and json.dumps(
        {"type": "function", "function": toolcalls.functions([WEATHER])[0]}) in out[0]["content"]
    assert out[2]["content"] == ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
                                 '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>')
    assert out[3]["content"] == "<tool_response>\n18 C\n</tool_response>\n<tool_response>\n21 C\n</tool_response>"
    assert all(isinstance(m["content"], str) for m in out)


def _run(pieces: list[str], names: list[str]) -> list[tuple[str, object]]:
    parser = toolcalls.CallParser(names)
    events = [e for piece in pieces for e in parser.feed(piece)] + parser.finish()
    merged: list[tuple[str, object]] = []
    for kind, value in events:  # adjacent text pieces joined, to compare
        if kind == "text" and merged and merged[-1][0] == "text":
            merged[-1] = ("text", str(merged[-1][1]) + str(value))
        else:
            merged.append((kind, value))
    return merged


def test_parser_finds_calls_split_anywhere() -> None:
    text = 'Sure. <tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    call = ("call", {"index": 0, "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}})
    for size in (1, 2, 3, 7, len(text)):
        assert _run([text[i:i + size] for i in range(0, len(text), size)], ["add"]) == [("text", "Sure. "), call]


def test_parser_holds_back_only_a_possible_tag() -> None:
    parser = toolcalls.CallParser(["add"])
    assert parser.feed("a <tool") == [("text", "a ")]
    assert parser.feed("box") == [("text", "<toolbox")]
    assert parser.feed(" 1 < 2") == [("text", " 1 < 2")]
    assert parser.feed(" x <") == [("text", " x ")]
    assert parser.finish() == [("text", "<")]


def test_parser_leaves_non_calls_as_text() -> None:
    bad = "<tool_call>\nnot json\n</tool_call>"
    unknown = '<tool_call>{"name": "rm", "arguments": {}}</tool_call>'
    assert _run([bad], ["add"]) == [("text", bad)]
    assert _run([unknown], ["add"]) == [("text", unknown)]
    unclosed = '<tool_call>\n{"name": "add", "arguments": "{\\"a\\": 1}"}'
    assert _run([unclosed], ["add"]) == [("call", {"index": 0, "function": {"name": "add", "arguments": '{"a": 1}'}})]
    two = '<tool_call>{"name":"add","arguments":{}}</tool_call><tool_call>{"name":"add","arguments":{}}</tool_call>'
    assert [v["index"] for k, v in _run([two], ["add"]) if k == "call"] == [0, 1]  # type: ignore[index]


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def test_stream_calls_openai_deltas() -> None:
    text = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    chunks = [_chunk({"role": "assistant"})] + [_chunk({"content": text[i:i + 4]}) for i in range(0, len(text), 4)]
    out = list(toolcalls.stream_calls(iter([*chunks, _chunk({}, "stop")]), ["add"]))
    deltas = [c["choices"][0]["delta"] for c in out]
    assert deltas[0] == {"role": "assistant"}
    calls = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert len(calls) == 1 and calls[0][0]["index"] == 0 and calls[0][0]["id"].startswith("call_")
    assert calls[0][0]["type"] == "function" and calls[0][0]["function"] == {"name": "add",
                                                                             "arguments": '{"a": 1, "b": 2}'}
    assert not any(d.get("content") for d in deltas)
    assert out[-1]["choices"][0]["finish_reason"] == "tool_calls"
    plain = list(toolcalls.stream_calls(iter([_chunk({"content": "hello"}), _chunk({}, "stop")]), ["add"]))
    assert plain[0]["choices"][0]["delta"] == {"content": "hello"}
    assert plain[-1]["choices"][0]["finish_reason"] == "stop"


def test_tool_grammar_is_gbnf_for_the_allowed_tools() -> None:
    tools = toolcalls.functions([WEATHER, ADD])
    gbnf = toolcalls.gbnf_tool_call(tools, ["add"])
    assert gbnf.startswith('root ::= "<tool_call>\\n" call "\\n</tool_call>"')
    assert '"\\"add\\""' in gbnf and "get_weather" not in gbnf
    both = toolcalls.gbnf_tool_call(tools, ["get_weather", "add"])
    assert "call-0" in both and "call-1" in both


def test_context_overflow_is_llama_servers_error_and_pickles() -> None:
    err = ContextOverflow.from_error(ValueError("Requested tokens (9001) exceed context window of 8192"))
    assert err is not None
    again = pickle.loads(pickle.dumps(err))
    assert again.body() == {"error": {
        "code": 400,
        "message": "request (9001 tokens) exceeds the available context size (8192 tokens), try increasing it",
        "type": "exceed_context_size_error", "n_prompt_tokens": 9001, "n_ctx": 8192}}
    assert ContextOverflow.from_error(ValueError("something else")) is None


def test_chat_context_sizes() -> None:
    assert chat_context(8192, None) == 8192 and chat_context(2048, None) == 8192  # the old default
    assert chat_context(8192, 512) == 512 and chat_context(8192, 16384) == 16384
    assert chat_context(8192, -1) == 8192 and chat_context(None, -1) == 0
    assert chat_context(8192, 0) == 8192 and chat_context(8192, -5) == 8192  # ignored, as DMR


def test_configure_request_parsing() -> None:
    assert configure.parse_request({"model": "m", "context-size": 4096}) == ("m", "completion", {"context-size": 4096})
    model, mode, config = configure.parse_request({"model": "m", "mode": "embedding", "keep_alive": "5m",
                                                   "speculative": {"draft_model": "d", "num_tokens": 0}})
    assert (mode, config) == ("embedding", {"speculative": {"draft_model": "d"}, "keep_alive": "5m0s"})
    assert configure.parse_request(None) == ("", "completion", {})
    for bad in ({"context-size": "big"}, {"context-size": 1 << 40}, {"mode": "fast"}, {"keep_alive": "soon"}, [1]):
        with pytest.raises(configure.BadRequest):
            configure.parse_request(bad)
    with pytest.raises(configure.Refused):
        configure.parse_request({"model": "m", "runtime-flags": ["--threads", "2"]})


def test_go_durations() -> None:
    cases = {"5m": "5m0s", "1h": "1h0m0s", "90s": "1m30s", "1.5s": "1.5s", "500ms": "500ms", "0": "0s",
             "1h30m": "1h30m0s", "2us": "2µs"}
    for text, shown in cases.items():
        assert configure.format_duration(configure.parse_duration(text)) == shown
    assert configure.parse_duration("-1") < 0


def test_runner_configs_persist(tmp_path: Path) -> None:
    path = tmp_path / configure.FILENAME
    configs = configure.RunnerConfigs(path)
    assert configs.set("llama.cpp", "sha256:a", "completion", {"context-size": 2048})
    assert not configs.set("llama.cpp", "sha256:a", "completion", {"context-size": 2048})

    class Model:
        id = "sha256:a"

    again = configure.RunnerConfigs(path)
    assert again.context_size(Model()) == 2048 and again.entries() == configs.entries()
    again.set("llama.cpp", "sha256:a", "completion", {"context-size": 0})
    assert configure.RunnerConfigs(path).context_size(Model()) is None
