"""DMR's request log (`GET /engines/requests`), against the real server and model."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from labkit.dmr import requestlog
from tests import support

from .conftest import REF, Session

Records = list[dict[str, Any]]


def chat(http: httpx.Client, content: str, path: str = "/engines/v1/chat/completions", **extra: Any) -> httpx.Response:
    body = {"model": REF, "messages": [{"role": "user", "content": content}], "max_tokens": 1, "temperature": 0}
    return http.post(path, json={**body, **extra})


def records(http: httpx.Client, model: str = REF) -> Records:
    listing = http.get("/engines/requests", params={"model": model}).json()
    return listing[0]["records"] if listing else []


def wait_for(http: httpx.Client, marker: str, done: Callable[[dict[str, Any]], bool] = lambda r: r["status_code"] > 0,
             timeout: float = 30) -> dict[str, Any]:
    """The record whose request holds ``marker``, once finished. The server stores it just after the
    client has the whole answer (as DMR does), so a listing sent at once may still show it running."""
    def finished() -> dict[str, Any] | None:
        found = [r for r in records(http) if marker in r["request"]]
        return found[-1] if found and done(found[-1]) else None

    return support.wait_for(finished, timeout, f"a finished record for {marker}")


def model_id(http: httpx.Client) -> str:
    return str(http.get(f"/models/{REF}").json()["id"])


def test_ring_keeps_the_last_ten_per_model(http: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    for i in range(12):
        assert chat(http, f"{tag} #{i}").status_code == 200
    wait_for(http, f"{tag} #11")
    (entry,) = http.get("/engines/requests", params={"model": REF}).json()
    assert entry["model"] == model_id(http) and entry["count"] == 10 and isinstance(entry["config"], dict)
    asked = [json.loads(r["request"])["messages"][0]["content"] for r in entry["records"]]
    assert asked == [f"{tag} #{i}" for i in range(2, 12)]
    assert any(e["model"] == entry["model"] and e["count"] == 10 for e in http.get("/engines/requests").json())


def test_record_shape(http: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    assert chat(http, marker, path="/v1/chat/completions").status_code == 200  # DMR's alias
    record = wait_for(http, marker)
    assert list(record) == ["id", "model", "method", "url", "request", "response", "timestamp", "status_code",
                            "user_agent"]  # error and origin are omitted when empty, as in DMR
    assert record["id"].startswith(model_id(http) + "_") and record["model"] == REF
    assert (record["method"], record["url"], record["status_code"]) == ("POST", "/engines/v1/chat/completions", 200)
    assert abs(record["timestamp"] - time.time()) < 120 and record["user_agent"].startswith("python-httpx/")
    assert json.loads(record["response"])["object"] == "chat.completion"


def test_stream_is_reassembled_and_reaches_the_client_unchanged(http: httpx.Client) -> None:
    body = {"model": REF, "messages": [{"role": "user", "content": f"Say hi {uuid.uuid4().hex}"}], "max_tokens": 8,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    with http.stream("POST", "/engines/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    chunks = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    record = wait_for(http, body["messages"][0]["content"])
    assert json.loads(record["request"]) == body
    final = json.loads(record["response"])
    (choice,) = final["choices"]
    assert final["object"] == "chat.completion" and final["id"] == chunks[0]["id"]
    assert choice["message"] == {"role": "assistant", "content": text} and "delta" not in choice
    assert choice["finish_reason"] in ("stop", "length") and final["usage"] == chunks[-1]["usage"]


def test_engine_errors_are_recorded_refusals_are_not(http: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    resp = chat(http, marker, max_tokens=0)  # llama.cpp's own 400: DMR records it
    assert resp.status_code == 400
    record = wait_for(http, marker)
    assert record["status_code"] == 400 and "response" not in record
    assert json.loads(record["error"]) == resp.json()
    before = http.get("/engines/requests").json()
    refused = [
        http.post("/engines/v1/chat/completions", json={"model": "ai/not-pulled", "messages": []}),
        http.post("/engines/v1/chat/completions", content=b"{not json"),
        http.post("/engines/v1/chat/completions", json={"messages": []}),
        http.post("/engines/vllm/v1/chat/completions", json={"model": REF, "messages": []}),
    ]
    assert [r.status_code for r in refused] == [404, 400, 400, 412]
    assert http.get("/engines/v1/models").status_code == 200
    assert http.get("/engines/requests").json() == before


def test_unknown_model_filter_is_an_empty_list(http: httpx.Client) -> None:
    resp = http.get("/engines/requests", params={"model": "ai/never-pulled"})
    assert resp.status_code == 200 and resp.json() == [] and resp.headers["content-type"] == "application/json"


# -- server-sent events ------------------------------------------------------------------------


def events(resp: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event, decoded data) pairs of an SSE response, as they arrive."""
    name = ""
    for line in resp.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            yield name, json.loads(line[len("data: "):])


def test_follow_gets_a_new_request_event(pulled: Session, http: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    sender = threading.Thread(target=lambda: httpx.post(
        pulled.base_url + "/engines/v1/chat/completions", timeout=60,
        json={"model": REF, "messages": [{"role": "user", "content": marker}], "max_tokens": 1}))
    headers = {"Accept": "text/event-stream"}
    with http.stream("GET", "/engines/requests", params={"model": REF}, headers=headers) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        stream = events(resp)
        assert next(stream) == ("connected", {"status": "connected"})
        sender.start()
        for name, data in stream:
            if name == "new_request" and marker in data[0]["records"][0]["request"]:
                break
    sender.join()
    (entry,) = data
    assert entry["count"] == 1 and entry["model"] == REF and isinstance(entry["config"], dict)
    assert entry["records"][0]["status_code"] == 200 and entry["records"][0]["response"]


def test_follow_with_existing_records_first(http: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    assert chat(http, marker).status_code == 200
    wait_for(http, marker)
    stored = records(http)
    headers = {"Accept": "text/event-stream"}
    params = {"model": REF, "include_existing": "true"}
    with http.stream("GET", "/engines/requests", params=params, headers=headers) as resp:
        seen = []
        for name, data in events(resp):
            if name == "connected":
                break
            assert name == "existing_request" and data[0]["count"] == 1
            seen.append(data[0]["records"][0])
    assert [r["id"] for r in seen] == [r["id"] for r in stored]


# -- the translating APIs (other modules; skipped while their routes are missing) ------------------


def _anthropic(http: httpx.Client, marker: str) -> httpx.Response:
    body = {"model": REF, "max_tokens": 4, "stream": True, "messages": [{"role": "user", "content": marker}]}
    return http.post("/anthropic/v1/messages", json=body)


def _ollama(http: httpx.Client, marker: str) -> httpx.Response:
    body = {"model": REF, "messages": [{"role": "user", "content": marker}], "options": {"num_predict": 4}}
    return http.post("/api/chat", json=body)


def _responses(http: httpx.Client, marker: str) -> httpx.Response:
    return http.post("/v1/responses", json={"model": REF, "input": marker, "max_output_tokens": 4, "stream": True})


@pytest.mark.parametrize(("send", "origin", "text_of"), [
    (_anthropic, "anthropic/messages", lambda r: r["content"][0]["text"]),
    (_ollama, "ollama/completion", lambda r: r["message"]["content"]),
    (_responses, None, lambda r: r["output_text"]),
], ids=["anthropic", "ollama", "responses"])
def test_translated_streams_are_recorded_whole(http: httpx.Client, send: Callable[..., httpx.Response],
                                               origin: str | None, text_of: Callable[[dict[str, Any]], str]) -> None:
    marker = uuid.uuid4().hex
    resp = send(http, marker)
    if resp.status_code == 404 and "not found" in resp.text and marker not in resp.text:
        pytest.skip("route not there yet (another module)")
    assert resp.status_code == 200, resp.text
    record = wait_for(http, marker)
    assert record.get("origin") == origin and record["status_code"] == 200
    assert isinstance(text_of(json.loads(record["response"])), str)


# -- re-assembly rules, as DMR's recorder applies them (no server needed) ---------------------------


@pytest.mark.fast  # pure: no server
def test_stream_errors_become_the_record_error() -> None:
    body = ('data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
            'error: {"code":500,"message":"boom","type":"server_error"}\n\n')
    response, error = requestlog.assemble("openai", "", body)
    assert response == body and json.loads(error or "") == {
        "status_code": 500, "message": "boom", "type": "server_error",
        "details": '{"code":500,"message":"boom","type":"server_error"}'}
    assert requestlog.normalize_error("model not found\n") == '{"error": "model not found\\n"}'
    assert requestlog.normalize_error("") == '{"error": "unknown error"}'


@pytest.mark.fast  # pure: no server
def test_anthropic_stream_is_reassembled() -> None:
    events = [("message_start", {"type": "message_start", "message": {"id": "m", "content": [], "usage": {}}}),
              ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}}),
              ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "!"}}),
              ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                                 "usage": {"output_tokens": 2}})]
    body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    response, error = requestlog.assemble("anthropic", "anthropic/messages", body)
    assert error is None and json.loads(response) == {"id": "m", "content": [{"type": "text", "text": "Hi!"}],
                                                       "usage": {"output_tokens": 2}, "stop_reason": "max_tokens"}


@pytest.mark.fast  # pure: no server
def test_media_in_requests_is_truncated() -> None:
    url = "data:image/png;base64," + "A" * 300
    body = json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})
    kept = json.loads(requestlog.truncate_media(body.encode()))
    assert kept["messages"][0]["content"][0]["image_url"]["url"] == (
        "data:image/png;base64," + "A" * 100 + "...[truncated 200 chars]")
