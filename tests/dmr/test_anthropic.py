"""DMR's Anthropic Messages API on the real model, with the `anthropic` SDK and httpx as clients.

Ports DMR's e2e check (`POST /anthropic/v1/messages` → `content[0].text`) and llama.cpp's
shape checks (tools/server/tests/unit/test_compat_anthropic.py); texts are not asserted,
they belong to the model.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

from .conftest import REF, Session

HI = [{"role": "user", "content": "Say hi."}]
WEATHER_TOOL = {"name": "get_weather", "description": "Get the current weather in a city.",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                 "required": ["city"]}}


@pytest.fixture(params=["", "/anthropic"], ids=["root", "anthropic-prefix"])
def client(request: pytest.FixtureRequest, pulled: Session) -> anthropic.Anthropic:
    """Both base URLs agents use: Docker's guide (root) and `docker model launch` (/anthropic)."""
    return anthropic.Anthropic(base_url=pulled.base_url + request.param, api_key="x", timeout=60, max_retries=0)


def _events(http: httpx.Client, path: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of one streamed request."""
    out: list[tuple[str, dict[str, Any]]] = []
    name = ""
    with http.stream("POST", path, json={**body, "stream": True}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[6:])))
    return out


def test_dmr_e2e_messages(http: httpx.Client) -> None:
    """DMR's own e2e check, plus llama.cpp's shape: no `timings`, usage with the three counters."""
    resp = http.post("/anthropic/v1/messages", json={"model": REF, "max_tokens": 32, "messages": HI})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["content"][0]["type"] == "text" and body["content"][0]["text"]
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", REF)
    assert body["stop_reason"] in ("end_turn", "max_tokens") and body["stop_sequence"] is None
    assert set(body["usage"]) == {"cache_read_input_tokens", "input_tokens", "output_tokens"}
    assert body["usage"]["output_tokens"] > 0 and "timings" not in body


def test_sdk_create_stream_and_count_agree(client: anthropic.Anthropic) -> None:
    """Greedy: the streamed text is the same text; count_tokens is the input the request reports."""
    # This SDK version no longer has a `temperature` argument; the field still goes through the body.
    kwargs: dict[str, Any] = dict(model=REF, max_tokens=12, system="Answer briefly.", messages=HI,
                                  extra_body={"temperature": 0})
    made = client.messages.create(**kwargs)
    assert made.content[0].type == "text" and made.content[0].text
    with client.messages.stream(**kwargs) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == made.content[0].text == final.content[0].text
    assert final.usage.input_tokens == made.usage.input_tokens
    assert final.usage.output_tokens == made.usage.output_tokens and final.stop_reason == made.stop_reason
    counted = client.messages.count_tokens(model=REF, system="Answer briefly.", messages=HI)
    assert counted.input_tokens == made.usage.input_tokens


def test_count_tokens_answers_only_input_tokens(http: httpx.Client) -> None:
    """Also on every route spelling, with Claude Code's `?beta=true`, betas and keys it does not check."""
    headers = {"anthropic-beta": "interleaved-thinking-2025-05-14,some-future-beta", "x-api-key": "k",
               "authorization": "Bearer whatever", "anthropic-version": "2023-06-01"}
    counts = set()
    for path in ("/anthropic/v1/messages/count_tokens", "/v1/messages/count_tokens?beta=true",
                 "/engines/v1/messages/count_tokens", "/engines/llama.cpp/v1/messages/count_tokens"):
        resp = http.post(path, json={"model": REF, "messages": HI}, headers=headers)
        assert resp.status_code == 200, (path, resp.text)
        assert list(resp.json()) == ["input_tokens"]
        counts.add(resp.json()["input_tokens"])
    assert len(counts) == 1 and counts.pop() > 5


def test_count_matches_usage_for_system_blocks_and_turns(http: httpx.Client) -> None:
    """`system` as blocks equals the same text as a string; a multi-turn chat counts as it is sent."""
    turns = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there!"},
             {"role": "user", "content": [{"type": "text", "text": "How are"}, {"type": "text", "text": " you?"}]}]
    as_blocks = {"model": REF, "system": [{"type": "text", "text": "Be "}, {"type": "text", "text": "kind."}],
                 "messages": turns}
    as_string = {**as_blocks, "system": "Be kind."}
    counted = [http.post("/v1/messages/count_tokens", json=b).json()["input_tokens"] for b in (as_blocks, as_string)]
    used = http.post("/v1/messages", json={**as_blocks, "max_tokens": 1}).json()["usage"]["input_tokens"]
    assert counted[0] == counted[1] == used


def test_stream_event_order_and_names(http: httpx.Client) -> None:
    events = _events(http, "/v1/messages?beta=true", {"model": REF, "max_tokens": 8, "messages": HI})
    assert all(name == data["type"] for name, data in events)
    kinds = [name for name, _ in events]
    assert kinds[:2] == ["message_start", "content_block_start"] and kinds[-3:] == [
        "content_block_stop", "message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["usage"]["input_tokens"] > 0 and start["model"] == REF
    deltas = [d for n, d in events if n == "content_block_delta"]
    assert deltas and all(d["index"] == 0 and d["delta"]["type"] == "text_delta" for d in deltas)
    message_delta = events[-2][1]
    assert message_delta["delta"]["stop_reason"] in ("end_turn", "max_tokens")
    assert 0 < message_delta["usage"]["output_tokens"] <= 8


def test_tool_results_with_errors_are_accepted(client: anthropic.Anthropic) -> None:
    """A conversation with a `tool_use` and `tool_result` blocks (one flagged `is_error`) is answered."""
    made = client.messages.create(model=REF, max_tokens=8, tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "Weather in Paris and in Atlantis?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "t2", "name": "get_weather", "input": {"city": "Atlantis"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "Sunny, 25 C"},
            {"type": "tool_result", "tool_use_id": "t2", "is_error": True,
             "content": [{"type": "text", "text": "City not found"}]}]},
    ])
    assert made.type == "message" and made.content


def test_dmr_errors_in_dmrs_envelope(http: httpx.Client) -> None:
    """DMR's own checks on /anthropic answer its Anthropic envelope with its exact messages."""
    def error(resp: httpx.Response) -> tuple[int, dict[str, Any]]:
        assert resp.headers["content-type"] == "application/json"
        return resp.status_code, resp.json()

    path = "/anthropic/v1/messages"
    assert error(http.post(path, json={"model": "ai/nope", "max_tokens": 5, "messages": HI})) == (
        404, {"type": "error", "error": {"type": "not_found_error", "message": "Model not found: ai/nope"}})
    assert error(http.post(path, content=b"{bad json")) == (
        400, {"type": "error", "error": {"type": "invalid_request_error", "message": "Invalid JSON in request body"}})
    assert error(http.post(path, json={"messages": []})) == (
        400, {"type": "error", "error": {"type": "invalid_request_error", "message": "Missing required field: model"}})
    too_big = http.post(path + "/count_tokens", content=b'{"model":"' + b"x" * (10 << 20) + b'"}')
    assert error(too_big) == (
        413, {"type": "error", "error": {"type": "request_too_large", "message": "Request body too large"}})


def test_engines_routes_answer_the_schedulers_errors(http: httpx.Client) -> None:
    """`/engines/…/messages` reach DMR's scheduler directly: its plain-text errors, not the envelope."""
    cases = [("/v1/messages", {"model": "ai/nope", "messages": HI}, 404,
              """error while getting model: get model '"ai/nope"': model not found\n"""),
             ("/engines/v1/messages", {"messages": HI}, 400, "model is required\n"),
             ("/engines/nope/v1/messages", {"model": REF, "messages": HI}, 404, "backend not found\n"),
             ("/engines/vllm/v1/messages", {"model": REF, "messages": HI}, 412,
              'backend "vllm" is not installed; run: docker model install-runner --backend vllm\n')]
    for path, body, status, text in cases:
        resp = http.post(path, json=body)
        assert (resp.status_code, resp.text) == (status, text), path
        assert resp.headers["content-type"].startswith("text/plain")


def test_sdk_raises_typed_errors(pulled: Session) -> None:
    sdk = anthropic.Anthropic(base_url=pulled.base_url + "/anthropic", api_key="x", max_retries=0, timeout=30)
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk.messages.create(model="ai/nope", max_tokens=5, messages=HI)
    assert caught.value.body == {"type": "error", "error": {"type": "not_found_error",
                                                            "message": "Model not found: ai/nope"}}


def test_empty_or_missing_messages_are_not_a_500(http: httpx.Client) -> None:
    """DMR's e2e rule (no 500 for empty messages); a missing `messages` is llama.cpp's 400."""
    empty = http.post("/anthropic/v1/messages", json={"model": REF, "max_tokens": 5, "messages": []})
    assert empty.status_code != 500 and empty.status_code < 500
    missing = http.post("/anthropic/v1/messages", json={"model": REF, "max_tokens": 5})
    assert missing.status_code == 400 and missing.json()["error"]["message"] == "'messages' is required"


def test_forced_tool_use(client: anthropic.Anthropic, http: httpx.Client) -> None:
    """`tool_choice: any` forces a call: a `tool_use` block with a JSON input, streamed as `input_json_delta`.

    Needs the chat layer's tool calls (chat_chunks emitting OpenAI tool-call deltas).
    """
    request: dict[str, Any] = dict(model=REF, max_tokens=64, extra_body={"temperature": 0}, tools=[WEATHER_TOOL],
                                   tool_choice={"type": "any"},
                                   messages=[{"role": "user", "content": "What's the weather in Paris?"}])
    made = client.messages.create(**request)
    uses = [b for b in made.content if b.type == "tool_use"]
    assert made.stop_reason == "tool_use" and uses, made
    assert uses[0].name == "get_weather" and isinstance(uses[0].input, dict) and uses[0].id
    events = _events(http, "/anthropic/v1/messages", {**request.pop("extra_body"), **request})
    starts = [d for _, d in events if d["type"] == "content_block_start" and d["content_block"]["type"] == "tool_use"]
    assert starts and starts[0]["content_block"]["name"] == "get_weather"
    pieces = [d["delta"]["partial_json"] for _, d in events
              if d["type"] == "content_block_delta" and d["index"] == starts[0]["index"]]
    assert isinstance(json.loads("".join(pieces)), dict)
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
