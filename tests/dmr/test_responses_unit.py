"""The Responses translation without a server: request → chat body, chunks → events, errors, store.

Synthetic chunk sequences use the OpenAI streaming format (tool-call id and name only in a call's
first chunk, ``finish_reason: "tool_calls"``, a last chunk with ``choices: []`` and ``usage``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from labkit.dmr import responses, server
from labkit.dmr.responses_stream import StreamTranslator, parse_sse, sse
from labkit.dmr.responses_translate import (
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

pytestmark = pytest.mark.fast

MODEL = "ai/smollm2:135M-Q4_1"
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def chat(body: dict[str, Any], compat: str = CURRENT, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """The chat body for a request, with an optional store of earlier responses."""
    return chat_request({"model": MODEL, **body}, compat, (stored or {}).get)


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice."""
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}], **extra}


USAGE_TAIL = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL, "choices": [],
              "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}


def tool_delta(index: int, args: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    """A tool-call delta; id and name only where the backend sends them (the call's first chunk)."""
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return {"tool_calls": [call]}


TEXT_CHUNKS = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
               chunk({}, "stop"), USAGE_TAIL]
CALL_CHUNKS = [chunk({"role": "assistant", "content": None}), chunk(tool_delta(0, "", "call_abc", "get_weather")),
               chunk(tool_delta(0, '{"city": ')), chunk(tool_delta(0, '"Paris"}')), chunk({}, "tool_calls"), USAGE_TAIL]


def run_stream(chunks: list[dict[str, Any]]) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """All events for a chunk sequence, and the final Response."""
    response = new_response({"model": MODEL, "stream": True}, CURRENT, 1)
    translator = StreamTranslator(response)
    events = translator.start()
    for c in chunks:
        events += translator.feed(c)
    return events + translator.finish(), response


# -- request translation ----------------------------------------------------------------------------

def test_instructions_and_string_input() -> None:
    """instructions lead as a system message; a string input is one user message."""
    body = chat({"instructions": "Be brief.", "input": "Hi", "max_output_tokens": 9, "temperature": 0.2,
                 "top_p": 0.9, "stream": True})
    assert body == {"model": MODEL, "messages": [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "Hi"}],
                    "temperature": 0.2, "top_p": 0.9, "max_tokens": 9, "stream": True}


def test_input_items_as_dmr_converts_them() -> None:
    """Messages keep their role; parts become chat parts; anything with a call_id becomes a tool message."""
    items = [
        {"type": "message", "role": "developer", "content": "Use tools."},
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"content": "bare"},
    ]
    assert chat({"input": items})["messages"] == [
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "tool", "content": "", "tool_call_id": "call_1"},  # DMR's quirk: the call itself
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
        {"role": "user", "content": "bare"},
    ]


def test_bad_input_is_a_go_decoding_error() -> None:
    with pytest.raises(BadRequest, match=re.escape("failed to parse input: input must be a string or array of items: "
                                                   "json: cannot unmarshal object into Go value of type "
                                                   "[]responses.InputItem")):
        chat({"input": {"role": "user"}})


def test_function_tools_flat_and_nested() -> None:
    tools = [{"type": "function", "name": "get_weather", "description": "Weather", "parameters": WEATHER,
              "strict": True},
             {"type": "function", "function": {"name": "get_time"}}]
    body = chat({"input": "x", "tools": tools, "tool_choice": "required", "parallel_tool_calls": False})
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER}},
        {"type": "function", "function": {"name": "get_time"}}]
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False


def test_other_tool_types_refused_now_dropped_in_126() -> None:
    tools = [{"type": "web_search"}, {"type": "function", "name": "f"}]
    with pytest.raises(BadRequest) as caught:
        chat({"input": "x", "tools": tools})
    assert str(caught.value) == ('tool type "web_search" is not supported by Docker Model Runner Responses '
                                 'compatibility layer')
    assert chat({"input": "x", "tools": tools}, V126)["tools"] == [{"type": "function", "function": {"name": "f"}}]


def test_text_format_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    fmt = {"type": "json_schema", "name": "answer_payload", "strict": True, "schema": schema}
    assert chat({"input": "x", "text": {"format": fmt}})["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "answer_payload", "schema": schema, "strict": True}}
    assert chat({"input": "x", "text": {"format": {"type": "json_object"}}})["response_format"] == {
        "type": "json_object"}
    assert "response_format" not in chat({"input": "x", "text": {"format": {"type": "text"}}})
    assert "response_format" not in chat({"input": "x", "text": {"format": fmt}}, V126)  # 1.2.6 had no `text`


@pytest.mark.parametrize(("fmt", "message"), [
    ({"type": "json_schema", "schema": {}}, "text.format.name is required when text.format.type is json_schema"),
    ({"type": "json_schema", "name": "has space", "schema": {}},
     "text.format.name must contain only letters, numbers, underscores, and dashes, with a maximum length of 64"),
    ({"type": "json_schema", "name": "x" * 65, "schema": {}}, "with a maximum length of 64"),
    ({"type": "json_schema", "name": "n"}, "text.format.schema is required when text.format.type is json_schema"),
    ({"type": "json_schema", "name": "n", "schema": [1]}, "text.format.schema must be a JSON object"),
    ({"type": "xml"}, 'unsupported text.format.type "xml"'),
])
def test_text_format_errors(fmt: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        chat({"input": "x", "text": {"format": fmt}})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("include", ["reasoning.encrypted_content"], "include is not supported by Docker Model Runner Responses "
                                                 "compatibility layer"),
    ("stream_options", {"include_usage": True}, "stream_options is not supported"),
    ("top_logprobs", 2, "top_logprobs is not supported"),
    ("truncation", "auto", 'truncation value "auto" is not supported'),
    ("background", True, "background responses are not supported"),
    ("conversation", "conv_1", "conversation is not supported by Docker Model Runner Responses compatibility layer; "
                               "use previous_response_id instead"),
    ("prompt", {"id": "p"}, "prompt is not supported"),
    ("service_tier", "flex", "service_tier is not supported"),
    ("safety_identifier", "u1", "safety_identifier is not supported"),
])
def test_unsupported_fields(field: str, value: Any, message: str) -> None:
    assert unsupported_field({field: value}).startswith(message)


def test_accepted_fields_pass() -> None:
    """Empty/neutral values and unknown fields (Codex's reasoning, prompt_cache_key …) are fine."""
    body = {"include": [], "truncation": "disabled", "background": False, "stream_options": None,
            "reasoning": {"summary": "auto"}, "prompt_cache_key": "k", "client_metadata": {}}
    assert unsupported_field(body) is None


@pytest.mark.parametrize(("body", "message"), [
    ({"model": 3}, "json: cannot unmarshal number into Go struct field CreateRequest.model of type string"),
    ({"model": "m", "max_output_tokens": 1.5},
     "json: cannot unmarshal number 1.5 into Go struct field CreateRequest.max_output_tokens of type int"),
    ({"model": "m", "tools": {}}, "json: cannot unmarshal object into Go struct field CreateRequest.tools of type "
                                  "[]responses.Tool"),
    ({"model": "m", "tools": [{"name": 1}]}, "json: cannot unmarshal number into Go struct field Tool.tools.name of "
                                             "type string"),
    ({"model": "m", "text": {"format": {"name": True}}},
     "json: cannot unmarshal bool into Go struct field ResponseTextFormat.text.format.name of type string"),
    ({"model": "m", "metadata": {"a": 1}}, "json: cannot unmarshal number into Go struct field "
                                           "CreateRequest.metadata of type string"),
])
def test_go_type_errors(body: dict[str, Any], message: str) -> None:
    assert go_type_error(body, REQUEST[CURRENT]) == message


def test_fields_1_2_6_did_not_have_are_not_checked() -> None:
    assert go_type_error({"model": "m", "include": "x", "text": 1}, REQUEST[V126]) is None


def test_json_syntax_errors_read_like_go() -> None:
    for text, message in (("", "unexpected end of JSON input"), ('{"a":', "unexpected end of JSON input"),
                          ("x", "invalid character 'x' looking for beginning of value"),
                          ("{} x", "invalid character 'x' after top-level value")):
        with pytest.raises(json.JSONDecodeError) as caught:
            json.loads(text)
        assert responses.go_syntax_error(caught.value) == message


# -- previous_response_id -------------------------------------------------------------------------------

def stored_pair() -> dict[str, Any]:
    """Two chained responses: a text answer, then a tool call."""
    first = complete(new_response({"model": MODEL}, CURRENT, 1),
                     {"content": "Hi!", "tool_calls": [], "usage": None})
    second = complete(new_response({"model": MODEL, "previous_response_id": first["id"]}, CURRENT, 2),
                      {"content": "", "tool_calls": [{"id": "call_1", "name": "f", "arguments": "{}"}],
                       "usage": None})
    return {first["id"]: first, second["id"]: second}


def test_history_is_the_chain_of_outputs() -> None:
    """As DMR: earlier outputs are replayed (oldest first), earlier inputs are not stored."""
    stored = stored_pair()
    last = list(stored)[-1]
    assert chat({"instructions": "sys", "previous_response_id": last, "input": "next"}, stored=stored)["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "next"},
    ]


def test_unknown_previous_response() -> None:
    with pytest.raises(BadRequest, match=re.escape('previous_response_id "resp_gone" was not found')):
        chat({"previous_response_id": "resp_gone", "input": "x"})
    assert chat({"previous_response_id": "resp_gone", "input": "x"}, V126)["messages"] == [
        {"role": "user", "content": "x"}]  # 1.2.6 ignored an unknown id


def test_store_ttl() -> None:
    now = [100.0]
    store = responses.ResponseStore(ttl=10, clock=lambda: now[0])
    store.save({"id": "resp_a"})
    assert store.get("resp_a") == {"id": "resp_a"}
    now[0] = 111
    assert store.get("resp_a") is None
    assert store.delete("resp_a") and not store.delete("resp_a")


# -- the Response object and events ---------------------------------------------------------------------

def test_new_response_shape() -> None:
    """Go's struct order; unset pointers are null; omitempty fields absent; 1.2.6 has no store/text."""
    response = public(new_response({"model": MODEL, "temperature": 1.0, "instructions": "sys"}, CURRENT, 5))
    assert list(response)[:6] == ["id", "object", "created_at", "model", "status", "output"]
    assert re.fullmatch(r"resp_[a-z0-9]{24}", response["id"])
    assert response["temperature"] == 1 and isinstance(response["temperature"], int)
    assert response["tools"] is None and response["metadata"] is None and response["store"] is True
    assert "output_text" not in response and "finish_reason" not in response and "text" not in response
    assert "store" not in public(new_response({"model": MODEL}, V126, 5))


def test_text_stream_events_and_sequence() -> None:
    events, response = run_stream(TEXT_CHUNKS)
    assert [e[0] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e[1]["sequence_number"] for e in events] == list(range(1, 11))
    created, added, delta = events[0][1], events[2][1], events[4][1]
    assert created["response"]["status"] == "in_progress" and created["response"]["output"] == []
    assert "output_index" not in added and added["item"]["content"] == [{"type": "output_text"}]
    assert re.fullmatch(r"msg_[a-z0-9]{24}", delta["item_id"]) and delta["delta"] == "Hel"
    assert events[6][1]["part"] == {"type": "output_text", "text": "Hello"}
    done = events[-1][1]["response"]
    assert done["status"] == "completed" and done["output_text"] == "Hello" and done["finish_reason"] == "stop"
    assert done["usage"] == {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}
    assert response["output"][0]["content"][0]["text"] == "Hello"


def test_tool_call_stream_makes_one_function_call_item() -> None:
    """id and name only in the first chunk: later argument chunks continue the same item (by index)."""
    events, response = run_stream(CALL_CHUNKS)
    assert [e[0] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    added = events[2][1]["item"]
    assert re.fullmatch(r"item_[a-z0-9]{24}", added["id"])
    assert added == {"id": added["id"], "type": "function_call", "status": "in_progress", "call_id": "call_abc",
                     "name": "get_weather"}  # arguments "" is omitted (omitempty)
    assert events[5][1]["delta"] == '{"city": "Paris"}'  # DMR puts the whole arguments in `delta`
    item = events[6][1]["item"]
    assert item["status"] == "completed" and json.loads(item["arguments"]) == {"city": "Paris"}
    assert response["output"] == [item] and response["finish_reason"] == "tool_calls"
    assert "output_text" not in public(response)


def test_two_tool_calls_and_text() -> None:
    """Calls are told apart by index; the message comes first in the output, calls after it."""
    chunks = [chunk({"content": "Checking."}), chunk(tool_delta(0, '{"a":', "call_1", "f")),
              chunk(tool_delta(1, '{"b":', "call_2", "g")), chunk(tool_delta(0, "1}")), chunk(tool_delta(1, "2}")),
              chunk({}, "tool_calls"), USAGE_TAIL]
    events, response = run_stream(chunks)
    assert [(i["type"], i.get("name"), i.get("arguments")) for i in response["output"]] == [
        ("message", None, None), ("function_call", "f", '{"a":1}'), ("function_call", "g", '{"b":2}')]
    call_added = [e[1] for e in events if e[0] == "response.output_item.added"][1:]
    assert [e.get("output_index", 0) for e in call_added] == [0, 1]  # DMR numbers calls among themselves


def test_id_in_every_chunk_also_works() -> None:
    """Backends that repeat the id (DMR's assumption) give the same single item."""
    chunks = [chunk(tool_delta(0, '{"x":', "call_9", "f")), chunk({"tool_calls": [
        {"index": 0, "id": "call_9", "type": "function", "function": {"arguments": "1}"}}]})]
    _, response = run_stream(chunks)
    assert [(i["call_id"], i["arguments"]) for i in response["output"]] == [("call_9", '{"x":1}')]


def test_length_finish_marks_incomplete_details() -> None:
    _, response = run_stream([chunk({"content": "a"}), chunk({}, "length")])
    assert response["incomplete_details"] == {"reason": "max_tokens"} and response["status"] == "completed"


def test_failure_events() -> None:
    translator = StreamTranslator(new_response({"model": MODEL}, CURRENT, 1))
    events = translator.fail("Upstream service returned status code: 404")
    assert [(e[0], e[1]["sequence_number"]) for e in events] == [("error", 1), ("response.failed", 2)]
    assert events[0][1]["error"] == {"code": "upstream_error", "message": "Upstream service returned status code: 404"}
    assert events[1][1]["response"]["status"] == "failed"


def test_sse_frames_round_trip() -> None:
    events, _ = run_stream(TEXT_CHUNKS)
    wire = b"".join(sse(e) for e in events).decode()
    assert wire.startswith("event: response.created\ndata: {") and wire.endswith("}\n\n")
    assert parse_sse(wire) == events


def test_non_stream_output_puts_calls_before_text() -> None:
    """As DMR's TransformChatCompletionToResponse: function calls first, then the message."""
    response = complete(new_response({"model": MODEL}, CURRENT, 1), collect([*CALL_CHUNKS[:4], chunk(
        {"content": "done"}), USAGE_TAIL]))
    assert [i["type"] for i in response["output"]] == ["function_call", "message"]
    assert response["output"][0]["call_id"] == "call_abc" and response["output_text"] == "done"
    assert response["usage"]["total_tokens"] == 18 and "finish_reason" not in public(response)


# -- upstream errors ----------------------------------------------------------------------------------

def test_upstream_errors_as_dmr_reads_them() -> None:
    """llama.cpp's numeric code does not decode into DMR's struct: the whole body becomes the message."""
    overflow = {"error": {"code": 400, "message": "request (9000 tokens) exceeds the available context size (8192 "
                                                  "tokens), try increasing it", "type": "exceed_context_size_error",
                          "n_prompt_tokens": 9000, "n_ctx": 8192}}
    status, body = responses.upstream_answer(server.InferenceError(400, "too long", "exceed_context_size_error",
                                                                   overflow))
    assert status == 400 and responses.failure_detail(body) == {"code": "upstream_error", "message": body}
    assert json.loads(body) == overflow
    status, body = responses.upstream_answer(server.InferenceError(404, "model not found", "not_found"))
    assert (status, body) == (404, "model not found\n")
    assert responses.failure_detail('{"error":{"code":"x","message":"m"}}') == {"code": "x", "message": "m"}
    assert responses.failure_detail('{"error":{"message":"m"}}') == {"message": "m"}


def test_unknown_compat_stops_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(responses.COMPAT_ENV, "1.1")
    with pytest.raises(responses.CompatError, match=r'LABKIT_DMR_COMPAT="1.1" .* "current" .* "1.2.6"'):
        server.create_app()
    monkeypatch.setenv(responses.COMPAT_ENV, "1.2.6")
    assert responses.compat_setting() == V126


def test_126_tells_v1_from_engines_v1_by_the_clients_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """No model needed: a refused path answers before the body is read, a served one says `model is required`."""
    from starlette.testclient import TestClient

    monkeypatch.setenv(responses.COMPAT_ENV, "1.2.6")
    client = TestClient(server.create_app())  # no `with`: no lifespan, no engine
    refused = client.post("/engines/v1/responses", json={"input": "x"})
    assert (refused.status_code, refused.text) == (404, "not found\n")
    assert client.get("/engines/v1/responses/resp_x").text == "not found\n"
    served = client.post("/v1/responses", json={"input": "x"})
    assert served.json() == {"error": {"code": "invalid_request", "message": "model is required"}}
    monkeypatch.setenv(responses.COMPAT_ENV, "current")
    current = TestClient(server.create_app())
    assert current.post("/engines/v1/responses", json={"input": "x"}).status_code == 400


def test_unknown_compat_is_one_line_from_the_server_command() -> None:
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "labkit.dmr.server", "--port", "0"], capture_output=True, text=True,
                          env={**os.environ, responses.COMPAT_ENV: "1.1"}, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and 'LABKIT_DMR_COMPAT="1.1"' in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2
