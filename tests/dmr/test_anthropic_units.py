"""The Anthropic translation without a model: Messages → chat bodies, chat chunks → Messages and events.

The chunk sequences are synthetic, in the shape chat_chunks yields (OpenAI tool-call deltas
with the id and name in each call's first chunk), so the translation is pinned down even
before the engine produces tool calls.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from labkit.dmr import anthropic

pytestmark = pytest.mark.fast


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}


def _call(index: int, arguments: str, call_id: str = "", name: str = "") -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return {"tool_calls": [call]}


USAGE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "choices": [],
         "usage": {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}}

# Some text, then two tool calls whose arguments arrive in pieces, as the chat layer streams them.
TOOL_CHUNKS = [
    _chunk({"role": "assistant", "content": None}),
    _chunk({"content": "Let me look."}),
    _chunk(_call(0, '{"city": ', "call_a", "weather")),
    _chunk(_call(0, '"Paris"}')),
    _chunk(_call(1, "{}", "call_b", "clock")),
    _chunk({}, "tool_calls"),
    USAGE,
]


def test_system_blocks_tools_and_choice_become_chat_fields() -> None:
    body = {"model": "m", "system": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "weather", "description": "Weather.", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"}, "stop_sequences": ["END"], "max_tokens": 7, "top_k": 3}
    chat = anthropic.to_chat(body)
    assert chat["messages"][0] == {"role": "system", "content": "Be brief."}
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "weather", "description": "Weather.", "parameters": {"type": "object"}}}]
    assert chat["tool_choice"] == "required"
    assert (chat["stop"], chat["max_tokens"], chat["top_k"]) == (["END"], 7, 3)
    assert "stream" not in chat


def test_every_tool_choice() -> None:
    choices = {"auto": "auto", "any": "required", "none": "none"}
    for kind, expected in choices.items():
        assert anthropic.to_chat({"messages": [], "tool_choice": {"type": kind}})["tool_choice"] == expected
    named = anthropic.to_chat({"messages": [], "tool_choice": {"type": "tool", "name": "clock",
                                                               "disable_parallel_tool_use": True}})
    assert named["tool_choice"] == {"type": "function", "function": {"name": "clock"}}
    assert named["parallel_tool_calls"] is False


def test_tool_use_and_tool_results_become_tool_calls_and_tool_messages() -> None:
    body = {"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "t1", "name": "weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "text", "text": "Here:"},
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "Sunny"}]},
            {"type": "tool_result", "tool_use_id": "t2", "is_error": True, "content": "City not found"},
        ]},
        {"role": "assistant"},  # no content: dropped, as llama.cpp drops it
    ]}
    messages = anthropic.to_chat(body)["messages"]
    assert messages[1] == {"role": "assistant", "content": [{"type": "text", "text": "Checking."}],
                           "tool_calls": [{"id": "t1", "type": "function", "function": {
                               "name": "weather", "arguments": '{"city":"Paris"}'}}]}
    assert messages[2] == {"role": "user", "content": [{"type": "text", "text": "Here:"}]}
    assert messages[3] == {"role": "tool", "tool_call_id": "t1", "content": "Sunny"}
    assert messages[4] == {"role": "tool", "tool_call_id": "t2", "content": "City not found"}
    assert len(messages) == 5


def test_missing_messages_is_llama_cpps_error() -> None:
    try:
        anthropic.to_chat({"model": "m"})
    except ValueError as exc:
        assert str(exc) == "'messages' is required"
    else:
        raise AssertionError("no error")


def test_text_and_tool_calls_assemble_into_one_message() -> None:
    done = anthropic.Assembled()
    for chunk in TOOL_CHUNKS:
        done.add(chunk)
    message = anthropic.message(done, "ai/x")
    assert message["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "call_a", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "clock", "input": {}},
    ]
    assert message["stop_reason"] == "tool_use" and message["stop_sequence"] is None
    assert message["usage"] == {"cache_read_input_tokens": 0, "input_tokens": 40, "output_tokens": 9}
    assert (message["id"], message["type"], message["role"], message["model"]) == (
        "chatcmpl-1", "message", "assistant", "ai/x")


def test_tool_calls_stream_as_tool_use_blocks_with_input_json_deltas() -> None:
    stream = anthropic.EventStream("ai/x", 40)
    events = [e for chunk in TOOL_CHUNKS for e in stream.feed(chunk)] + stream.finish()
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert events[0]["message"]["usage"] == {"input_tokens": 40, "output_tokens": 0}
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [(0, "text"), (1, "tool_use"), (2, "tool_use")]
    assert starts[1]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}}
    pieces = [e["delta"]["partial_json"] for e in events
              if e["type"] == "content_block_delta" and e["index"] == 1]
    assert json.loads("".join(pieces)) == {"city": "Paris"}
    assert all(e["delta"]["type"] == "input_json_delta" for e in events
               if e["type"] == "content_block_delta" and e["index"] > 0)
    # llama.cpp closes every block at the end, in index order.
    assert [e["index"] for e in events if e["type"] == "content_block_stop"] == [0, 1, 2]
    assert kinds.index("content_block_stop") > max(i for i, k in enumerate(kinds) if k == "content_block_delta")
    assert events[-2]["delta"]["stop_reason"] == "tool_use" and events[-2]["usage"] == {"output_tokens": 9}


def test_text_only_stream_and_length_stop() -> None:
    stream = anthropic.EventStream("ai/x", 5)
    chunks = [_chunk({"role": "assistant"}), _chunk({"content": "Hi"}), _chunk({"content": "!"}),
              _chunk({}, "length"), USAGE]
    events = [e for chunk in chunks for e in stream.feed(chunk)] + stream.finish()
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    assert [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"] == ["Hi", "!"]
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"


def test_sse_frames_name_the_event() -> None:
    assert anthropic.sse({"type": "message_stop"}) == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
