"""Function calling and response_format on chat completions, with the real model through the real server."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from .conftest import REF, Session

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two integers",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
YES_NO = {"type": "json_schema", "json_schema": {"name": "a", "schema": {
    "type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}}, "required": ["answer"]}}}


@pytest.fixture
def sdk(pulled: Session) -> openai.OpenAI:
    return openai.OpenAI(base_url=pulled.base_url + "/engines/llama.cpp/v1", api_key="unused", timeout=60)


def test_required_gives_a_valid_call(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(model=REF, messages=ASK, tools=[WEATHER, ADD], tool_choice="required",
                                         temperature=0, max_tokens=80)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None and choice.message.role == "assistant"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_") and len(call.id) > 10
    arguments = json.loads(call.function.arguments)
    if call.function.name == "get_weather":
        assert isinstance(arguments["city"], str) and arguments["unit"] in ("celsius", "fahrenheit")
    else:
        assert call.function.name == "add" and all(isinstance(arguments[k], int) for k in "ab")


def test_named_function_streams_openai_deltas(pulled: Session) -> None:
    body = {"model": REF, "messages": [{"role": "user", "content": "Add 2 and 3."}], "tools": [WEATHER, ADD],
            "tool_choice": {"type": "function", "function": {"name": "add"}}, "stream": True, "temperature": 0,
            "max_tokens": 80}
    with httpx.stream("POST", pulled.base_url + "/v1/chat/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        chunks = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    pieces = [p for d in deltas for p in d.get("tool_calls") or []]
    assert pieces and pieces[0]["index"] == 0 and pieces[0]["id"].startswith("call_")
    assert pieces[0]["type"] == "function" and pieces[0]["function"]["name"] == "add"
    assert {p["index"] for p in pieces} == {0}
    arguments = json.loads("".join(p["function"].get("arguments") or "" for p in pieces))
    assert set(arguments) == {"a", "b"} and all(isinstance(v, int) for v in arguments.values())
    assert not "".join(d.get("content") or "" for d in deltas)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_sdk_stream_accumulates_the_call(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(model=REF, messages=ASK, tools=[WEATHER], tool_choice="required",
                                         temperature=0, max_tokens=80, stream=True)
    name, arguments, finish = "", "", None
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            name += call.function.name or ""
            arguments += call.function.arguments or ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert name == "get_weather" and finish == "tool_calls"
    assert set(json.loads(arguments)) >= {"city", "unit"}


def test_auto_answers_text_or_a_well_formed_call(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(model=REF, messages=ASK, tools=[WEATHER], temperature=0, max_tokens=40)
    message = answer.choices[0].message
    if message.tool_calls:
        assert answer.choices[0].finish_reason == "tool_calls"
        assert all(c.function.name == "get_weather" and isinstance(json.loads(c.function.arguments), dict)
                   for c in message.tool_calls)
    else:
        assert message.content and "<tool_call>" not in message.content
        assert answer.choices[0].finish_reason in ("stop", "length")


def test_none_does_not_offer_the_tools(sdk: openai.OpenAI) -> None:
    plain = sdk.chat.completions.create(model=REF, messages=ASK, temperature=0, max_tokens=12)
    none = sdk.chat.completions.create(model=REF, messages=ASK, tools=[WEATHER], tool_choice="none", temperature=0,
                                       max_tokens=12)
    assert none.choices[0].message.content == plain.choices[0].message.content
    assert none.usage.prompt_tokens == plain.usage.prompt_tokens
    assert not none.choices[0].message.tool_calls
    auto = sdk.chat.completions.create(model=REF, messages=ASK, tools=[WEATHER], temperature=0, max_tokens=1)
    assert auto.usage.prompt_tokens > plain.usage.prompt_tokens + 30  # offered: the tool list is in the prompt


def test_a_full_tool_round_trip(sdk: openai.OpenAI) -> None:
    """Call, result, answer: the agent loop, with an assistant message whose content is null."""
    first = sdk.chat.completions.create(model=REF, messages=ASK, tools=[WEATHER], tool_choice="required",
                                        temperature=0, max_tokens=80)
    call = first.choices[0].message.tool_calls[0]
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
               {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 18, "sky": "sunny"})}]
    final = sdk.chat.completions.create(model=REF, messages=history, tools=[WEATHER], tool_choice="none",
                                        temperature=0, max_tokens=40)
    assert final.choices[0].message.content and final.choices[0].finish_reason in ("stop", "length")
    assert final.usage.prompt_tokens > first.usage.prompt_tokens - 200  # the history made it into the prompt


@pytest.mark.parametrize("body,needle", [
    ({"tools": {"name": "x"}}, "'tools' must be an array"),
    ({"tools": [{"type": "web_search"}]}, "only tools of type"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "Invalid tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "add"}}}, "not in 'tools'"),
    ({"tool_choice": "required"}, "needs at least one tool"),
    ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
])
def test_bad_tool_fields_are_llama_server_400s(http: httpx.Client, body: dict, needle: str) -> None:
    resp = http.post("/engines/v1/chat/completions", json={"model": REF, "messages": ASK, **body})
    assert resp.status_code == 400 and resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error" and needle in error["message"]


def test_json_schema_constrains_the_answer(sdk: openai.OpenAI, pulled: Session) -> None:
    for question in ("Is the sky blue?", "Is fire cold?"):
        answer = sdk.chat.completions.create(model=REF, messages=[{"role": "user", "content": question}],
                                             response_format=YES_NO, temperature=0, max_tokens=30)
        assert json.loads(answer.choices[0].message.content) in ({"answer": "yes"}, {"answer": "no"})
    body = {"model": REF, "messages": [{"role": "user", "content": "Is water wet?"}], "response_format": YES_NO,
            "temperature": 1.0, "seed": 3, "max_tokens": 30, "stream": True}
    with httpx.stream("POST", pulled.base_url + "/engines/v1/chat/completions", json=body, timeout=60) as resp:
        text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                       for line in resp.iter_lines() if line.startswith("data: {"))
    assert json.loads(text) in ({"answer": "yes"}, {"answer": "no"})


def test_json_object_gives_an_object(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(model=REF, messages=[{"role": "user", "content": "Describe a cat in JSON."}],
                                         response_format={"type": "json_object"}, temperature=0, max_tokens=200)
    if answer.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(answer.choices[0].message.content), dict)
    else:  # cut by max_tokens: still the start of an object
        assert answer.choices[0].message.content.lstrip().startswith("{")
