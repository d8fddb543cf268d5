"""The Responses API end to end: real server, real llama.cpp, the OpenAI SDK and httpx as clients.

The session's server runs with the default ``LABKIT_DMR_COMPAT=current``; the ``1.2.6`` behaviour is
checked on a second app built in-process (its own engine, the same model store).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from starlette.testclient import TestClient

from labkit.dmr import responses, server
from labkit.dmr.responses_stream import parse_sse

from .conftest import REF, Session

pytestmark = pytest.mark.model
SHORT = {"model": REF, "input": "Say hi in one word.", "max_output_tokens": 8, "temperature": 0}
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Get the weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def sdk(pulled: Session) -> openai.OpenAI:
    return openai.OpenAI(base_url=pulled.base_url + "/v1", api_key="unused", timeout=60)


def stream_events(http: httpx.Client, path: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A streamed request's SSE events, read to the end."""
    with http.stream("POST", path, json={**body, "stream": True}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"] == "text/event-stream"
        return parse_sse(resp.read().decode())


# -- DMR's own e2e checks --------------------------------------------------------------------------

def test_responses_api(http: httpx.Client) -> None:
    """DMR e2e ResponsesAPI: POST /responses → completed, non-empty output_text."""
    resp = http.post("/responses", json={"model": REF, "input": "Say hi in one word.", "max_output_tokens": 16})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "completed" and body["output_text"].strip()
    assert body["id"].startswith("resp_") and body["object"] == "response" and body["model"] == REF
    assert body["output"][0]["type"] == "message" and body["output"][0]["content"][0]["text"] == body["output_text"]
    usage = body["usage"]
    assert usage["input_tokens"] > 0 and usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_structured_output(http: httpx.Client) -> None:
    """DMR e2e ResponsesAPIStructuredOutput: a json_schema text.format gives {"answer": "yes"}."""
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes"]}},
              "required": ["answer"], "additionalProperties": False}
    resp = http.post("/responses", json={
        "model": REF, "input": "Return a JSON object with answer set to yes.", "max_output_tokens": 64,
        "text": {"format": {"type": "json_schema", "name": "answer_payload", "strict": True, "schema": schema}}})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "completed" and json.loads(body["output_text"]) == {"answer": "yes"}
    assert body["text"]["format"]["name"] == "answer_payload"  # echoed


# -- the OpenAI SDK --------------------------------------------------------------------------------

def test_sdk_create(sdk: openai.OpenAI) -> None:
    response = sdk.responses.create(model=REF, input="What is the capital of France?", max_output_tokens=12,
                                    instructions="Answer briefly.")
    assert response.status == "completed" and response.output_text.strip()
    assert response.output[0].type == "message" and response.instructions == "Answer briefly."


def test_sdk_stream(sdk: openai.OpenAI) -> None:
    events = list(sdk.responses.create(model=REF, input="Say hi.", max_output_tokens=8, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and events[-1].response.output_text == text


# -- the stream ---------------------------------------------------------------------------------------

def test_stream_event_order_and_sequence_numbers(http: httpx.Client) -> None:
    events = stream_events(http, "/v1/responses", SHORT)
    kinds = [kind for kind, _ in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 1
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * deltas,
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.completed"]
    assert all(kind == data["type"] for kind, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(1, len(events) + 1))
    item_id = events[2][1]["item"]["id"]
    assert {data["item_id"] for _, data in events[3:-2]} == {item_id}
    final = events[-1][1]["response"]
    text = "".join(data["delta"] for kind, data in events if kind == "response.output_text.delta")
    assert final["status"] == "completed" and final["output_text"] == text and final["usage"]["output_tokens"] > 0
    assert http.get(f"/v1/responses/{final['id']}").json()["output_text"] == text  # stored


def test_stream_failure_is_error_then_failed(http: httpx.Client) -> None:
    events = stream_events(http, "/v1/responses", {**SHORT, "model": "ai/not-pulled"})
    assert [(kind, data["sequence_number"]) for kind, data in events] == [("error", 1), ("response.failed", 2)]
    assert events[0][1]["error"] == {"code": "upstream_error", "message": "Upstream service returned status code: 404"}
    assert events[1][1]["response"]["status"] == "failed"


# -- previous_response_id and the store ------------------------------------------------------------------

def test_previous_response_chaining_and_store(http: httpx.Client) -> None:
    first = http.post("/v1/responses", json={**SHORT, "input": "My name is Ada."}).json()
    second = http.post("/v1/responses", json={**SHORT, "input": "Say it again.", "previous_response_id": first["id"]})
    assert second.status_code == 200, second.text
    assert second.json()["previous_response_id"] == first["id"] and second.json()["status"] == "completed"
    for prefix in ("/v1/responses", "/responses", "/engines/v1/responses"):
        assert http.get(f"{prefix}/{first['id']}").json() == first
    assert http.get(f"/v1/responses/{first['id']}/input_items").json() == {"object": "list", "data": []}
    assert http.delete(f"/v1/responses/{first['id']}").json() == {"id": first["id"], "object": "response.deleted",
                                                                  "deleted": True}
    gone = {"error": {"code": "not_found", "message": "Response not found"}}
    assert http.get(f"/v1/responses/{first['id']}").json() == gone
    assert http.delete(f"/v1/responses/{first['id']}").status_code == 404
    unknown = http.post("/v1/responses", json={**SHORT, "previous_response_id": first["id"]})
    assert unknown.status_code == 400
    assert unknown.json() == {"error": {"code": "invalid_request",
                                        "message": f'previous_response_id "{first["id"]}" was not found'}}


def test_store_false_is_not_kept(http: httpx.Client) -> None:
    body = http.post("/v1/responses", json={**SHORT, "store": False}).json()
    assert body["store"] is False and http.get(f"/v1/responses/{body['id']}").status_code == 404


# -- errors (current DMR) -------------------------------------------------------------------------------

def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def test_request_errors(http: httpx.Client) -> None:
    too_big = http.post("/v1/responses", content=b" " * ((10 << 20) + 1))
    assert too_big.status_code == 413
    assert too_big.json() == error("request_too_large", "Request body too large (max 10485760 bytes)")
    bad = http.post("/v1/responses", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("Invalid JSON: ")
    assert http.post("/v1/responses", json={"input": "x"}).json() == error("invalid_request", "model is required")
    refused = http.post("/v1/responses", json={**SHORT, "include": ["reasoning.encrypted_content"]})
    assert refused.status_code == 400 and refused.json() == error(
        "invalid_request", "include is not supported by Docker Model Runner Responses compatibility layer")
    web = http.post("/v1/responses", json={**SHORT, "tools": [{"type": "web_search"}]})
    assert web.status_code == 400 and web.json() == error(
        "invalid_request", 'tool type "web_search" is not supported by Docker Model Runner Responses compatibility '
                           "layer")


def test_unknown_model_is_a_failed_response(http: httpx.Client) -> None:
    resp = http.post("/v1/responses", json={**SHORT, "model": "ai/not-pulled"})
    assert resp.status_code == 404
    body = resp.json()
    assert body["status"] == "failed" and body["output"] == [] and body["error"]["code"] == "upstream_error"
    assert "model not found" in body["error"]["message"]


def test_current_routes(http: httpx.Client) -> None:
    """Newer DMR also serves the /engines spellings; a backend path is checked like chat completions."""
    for path in ("/engines/responses", "/engines/v1/responses", "/engines/llama.cpp/v1/responses"):
        resp = http.post(path, json={**SHORT, "max_output_tokens": 2})
        assert resp.status_code == 200 and resp.json()["status"] == "completed", path
    vllm = http.post("/engines/vllm/v1/responses", json=SHORT)
    assert vllm.status_code == 412 and "install-runner --backend vllm" in vllm.json()["error"]["message"]
    assert http.post("/engines/nope/v1/responses", json=SHORT).status_code == 404


# -- tool calls (needs chat_chunks to emit tool-call deltas) ------------------------------------------------

def test_tool_choice_required_gives_a_function_call(http: httpx.Client) -> None:
    body = {"model": REF, "input": "What is the weather in Paris?", "tools": [WEATHER_TOOL],
            "tool_choice": "required", "max_output_tokens": 64, "temperature": 0}
    resp = http.post("/v1/responses", json=body)
    assert resp.status_code == 200, resp.text
    calls = [item for item in resp.json()["output"] if item["type"] == "function_call"]
    assert calls, f"no function_call item: {resp.json()['output']}"
    assert calls[0]["name"] == "get_weather" and calls[0]["call_id"]
    assert isinstance(json.loads(calls[0]["arguments"]), dict)


# -- LABKIT_DMR_COMPAT=1.2.6 --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def v126(dmr: Session) -> Iterator[TestClient]:
    """An in-process server behaving as DMR 1.2.6 (its lifespan starts its own engine)."""
    before = os.environ.get(responses.COMPAT_ENV)
    os.environ[responses.COMPAT_ENV] = "1.2.6"
    try:
        app = server.create_app()
    finally:
        if before is None:
            os.environ.pop(responses.COMPAT_ENV)
        else:
            os.environ[responses.COMPAT_ENV] = before
    with TestClient(app, raise_server_exceptions=True) as client:
        yield client


def test_126_ignores_what_current_refuses(pulled: Session, v126: TestClient) -> None:
    body = {**SHORT, "include": ["reasoning.encrypted_content"], "stream_options": {"include_usage": True},
            "service_tier": "flex", "truncation": "auto", "previous_response_id": "resp_unknown",
            "tools": [WEATHER_TOOL, {"type": "web_search"}], "text": {"format": {"type": "xml"}}, "store": False}
    resp = v126.post("/v1/responses", json=body)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["status"] == "completed" and "store" not in answer and "text" not in answer
    assert v126.get(f"/v1/responses/{answer['id']}").status_code == 200  # 1.2.6 always stored


def test_126_routes(pulled: Session, v126: TestClient) -> None:
    events = parse_sse(v126.post("/responses", json={**SHORT, "stream": True}).text)
    assert events[-1][0] == "response.completed"
    assert v126.post("/engines/responses", json=SHORT).text == "404 page not found\n"
    backend = v126.post("/engines/llama.cpp/v1/responses", json=SHORT)
    assert (backend.status_code, backend.text) == (404, "not found\n")


def test_126_has_no_engines_v1_responses(pulled: Session, v126: TestClient) -> None:
    refused = v126.post("/engines/v1/responses", json=SHORT)
    assert (refused.status_code, refused.text) == (404, "not found\n")
    assert v126.post("/v1/responses", json=SHORT).status_code == 200


def test_streamed_tool_call_events(http: httpx.Client) -> None:
    body = {"model": REF, "input": "What is the weather in Paris?", "tools": [WEATHER_TOOL],
            "tool_choice": "required", "max_output_tokens": 64, "temperature": 0}
    events = stream_events(http, "/v1/responses", body)
    added = [d["item"] for k, d in events if k == "response.output_item.added" and d["item"]["type"] == "function_call"]
    done = [d["item"] for k, d in events if k == "response.output_item.done" and d["item"]["type"] == "function_call"]
    assert len(added) == len(done) >= 1 and added[0]["status"] == "in_progress" and done[0]["status"] == "completed"
    assert isinstance(json.loads(done[0]["arguments"]), dict) and done[0]["name"] == "get_weather"
    assert events[-1][1]["response"]["output"][-1] == done[-1]


def test_context_overflow_is_a_failed_response(http: httpx.Client) -> None:
    """llama.cpp's 400 (numeric code) does not decode in DMR: its whole body becomes the message."""
    resp = http.post("/v1/responses", json={**SHORT, "input": "hello " * 20000})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "upstream_error" and json.loads(error["message"])["error"]["type"] == (
        "exceed_context_size_error")
