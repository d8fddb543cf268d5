"""Docker Model Runner's own end-to-end checks (its `e2e/inference_test.go` and `e2e/api_test.go`), ported.

They run against the embedded server, or against a real DMR when ``DMR_URL`` is set (e.g.
``DMR_URL=http://localhost:12434 DMR_MODEL=ai/smollm2:135M-Q4_0 pytest tests/dmr/test_dmr_e2e.py``),
so the same list says how close embedded mode is. Same requests and the same pass criteria as
DMR's Go tests; DMR's final "Remove" step is left out against the embedded server, whose model
the other tests of the session share (unload is kept).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest

from .conftest import REF

REAL = os.environ.get("DMR_URL", "").rstrip("/")
MODEL = os.environ.get("DMR_MODEL", REF) if REAL else REF


@pytest.fixture
def dmr_http(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """A client on a real DMR (``DMR_URL``), else on the embedded server with the model pulled."""
    base = REAL or request.getfixturevalue("pulled").base_url
    with httpx.Client(base_url=base, timeout=120) as client:
        yield client


def _pull(http: httpx.Client) -> None:
    resp = http.post("/models/create", json={"from": MODEL})
    assert resp.status_code == 200, resp.text
    assert '"type":"error"' not in resp.text, resp.text


def test_pull_and_list_models(dmr_http: httpx.Client) -> None:
    _pull(dmr_http)
    resp = dmr_http.get("/engines/v1/models")
    assert resp.status_code == 200
    assert any("smollm2" in m["id"] for m in resp.json()["data"])


def test_pull_is_idempotent(dmr_http: httpx.Client) -> None:
    _pull(dmr_http)
    _pull(dmr_http)


def test_chat_completion(dmr_http: httpx.Client) -> None:
    resp = dmr_http.post("/engines/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "Say hello in one word."}]})
    assert resp.status_code == 200, resp.text
    message = resp.json()["choices"][0]["message"]
    assert message["content"] and message["role"] == "assistant"


def test_chat_completion_streaming(dmr_http: httpx.Client) -> None:
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Count from 1 to 3."}]}
    with dmr_http.stream("POST", "/engines/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    text = "".join((json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
                   for line in lines[:-1])
    assert text


def test_responses_api(dmr_http: httpx.Client) -> None:
    resp = dmr_http.post("/responses", json={"model": MODEL, "input": "Say hi in one word."})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "completed" and resp.json()["output_text"]


def test_responses_api_structured_output(dmr_http: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes"]}},
              "required": ["answer"], "additionalProperties": False}
    resp = dmr_http.post("/responses", json={
        "model": MODEL, "input": "Return a JSON object with answer set to yes.", "max_output_tokens": 64,
        "text": {"format": {"type": "json_schema", "name": "answer_payload", "strict": True, "schema": schema}}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "completed"
    assert json.loads(resp.json()["output_text"]) == {"answer": "yes"}


def test_anthropic_messages(dmr_http: httpx.Client) -> None:
    resp = dmr_http.post("/anthropic/v1/messages", json={
        "model": MODEL, "max_tokens": 32, "messages": [{"role": "user", "content": "Say hi."}]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"] and resp.json()["content"][0]["text"]


def test_ollama_chat(dmr_http: httpx.Client) -> None:
    resp = dmr_http.post("/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}],
                                            "stream": False})
    assert resp.status_code == 200, resp.text
    assert resp.json()["message"]["content"] and resp.json()["done"] is True


def test_ollama_generate(dmr_http: httpx.Client) -> None:
    resp = dmr_http.post("/api/generate", json={"model": MODEL, "prompt": "Say hi.", "stream": False})
    assert resp.status_code == 200, resp.text
    assert resp.json()["response"] and resp.json()["done"] is True


def test_ollama_tags(dmr_http: httpx.Client) -> None:
    resp = dmr_http.get("/api/tags")
    assert resp.status_code == 200
    assert resp.json()["models"] and all(m["name"] for m in resp.json()["models"])


def test_invalid_model_is_not_200(dmr_http: httpx.Client) -> None:
    resp = dmr_http.post("/engines/v1/chat/completions", json={
        "model": "nonexistent/model:latest", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code != 200


def test_malformed_json_is_not_200(dmr_http: httpx.Client) -> None:
    resp = dmr_http.post("/engines/v1/chat/completions", content=b"{not json",
                         headers={"Content-Type": "application/json"})
    assert resp.status_code != 200


def test_empty_messages_is_not_500(dmr_http: httpx.Client) -> None:
    resp = dmr_http.post("/engines/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert resp.status_code != 500


def test_inspect_model(dmr_http: httpx.Client) -> None:
    resp = dmr_http.get(f"/engines/v1/models/{MODEL}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"]


def test_ollama_show(dmr_http: httpx.Client) -> None:
    resp = dmr_http.post("/api/show", json={"model": MODEL})
    assert resp.status_code == 200, resp.text
    assert resp.json()


def test_unload(dmr_http: httpx.Client) -> None:
    resp = dmr_http.post("/engines/unload", json={"all": True})
    assert resp.status_code == 200 and "unloaded_runners" in resp.json()
    if not REAL:  # the embedded session's model serves the next request again
        again = dmr_http.post("/engines/v1/chat/completions", json={
            "model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
        assert again.status_code == 200

