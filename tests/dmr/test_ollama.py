"""DMR's Ollama API on the real model, with the `ollama` client and httpx; and its translations, unit-tested.

Ports DMR's e2e checks (`/api/chat` → message.content and done, `/api/generate` → response and
done, `/api/tags` → models[].name, `/api/show`; unknown model, malformed JSON, empty messages).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import ollama
import pytest

from labkit.dmr import ollama as api

from .conftest import REF, TAG, Session

HI = [{"role": "user", "content": "Say hi."}]
GREEDY = {"temperature": 0, "num_predict": 10}


@pytest.fixture
def client(pulled: Session) -> ollama.Client:
    return ollama.Client(host=pulled.base_url, timeout=60)


def _lines(http: httpx.Client, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with http.stream("POST", path, json=body) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
        return [json.loads(line) for line in resp.iter_lines() if line]


# -- end to end -----------------------------------------------------------------------------------------


def test_dmr_e2e_chat_generate_tags_show(http: httpx.Client) -> None:
    chat = http.post("/api/chat", json={"model": REF, "messages": HI, "stream": False})
    assert chat.status_code == 200, chat.text
    assert chat.json()["message"]["content"] and chat.json()["done"] is True
    assert chat.json()["message"]["role"] == "assistant" and chat.json()["model"] == REF
    generate = http.post("/api/generate", json={"model": REF, "prompt": "Say hi.", "stream": False})
    assert generate.json()["response"] and generate.json()["done"] is True
    names = [m["name"] for m in http.get("/api/tags").json()["models"]]
    assert any("smollm2" in n for n in names)
    show = http.post("/api/show", json={"name": REF})
    assert show.status_code == 200 and show.json()["details"]["format"] == "gguf"


def test_chat_streams_ndjson_by_default(http: httpx.Client) -> None:
    """Every chat chunk gives a line; DMR's last line is a zero message with `done: true`."""
    whole = http.post("/api/chat", json={"model": REF, "messages": HI, "stream": False, "options": GREEDY}).json()
    lines = _lines(http, "/api/chat", {"model": REF, "messages": HI, "options": GREEDY})
    assert lines[-1]["done"] is True and lines[-1]["message"] == {"role": "", "content": ""}
    assert all(line["done"] is False and line["message"]["role"] == "assistant" for line in lines[:-1])
    assert "".join(line["message"]["content"] for line in lines) == whole["message"]["content"]
    assert all(line["created_at"].endswith("Z") for line in lines)


def test_generate_streams_responses(http: httpx.Client) -> None:
    whole = http.post("/api/generate", json={"model": REF, "prompt": "Say hi.", "stream": False,
                                             "options": GREEDY}).json()
    lines = _lines(http, "/api/generate", {"model": REF, "prompt": "Say hi.", "options": GREEDY})
    assert lines[-1]["done"] is True and "response" not in lines[-1]
    assert "".join(line.get("response", "") for line in lines) == whole["response"]


def test_ollama_client_chat_generate_list_show_ps(client: ollama.Client) -> None:
    chat = client.chat(model=REF, messages=HI, options=GREEDY)
    assert chat.message.content and chat.done
    streamed = "".join(part.message.content or "" for part in client.chat(model=REF, messages=HI, options=GREEDY,
                                                                            stream=True))
    assert streamed == chat.message.content
    assert client.generate(model=REF, prompt="Say hi.", options=GREEDY).response
    listed = client.list().models
    assert [m.model for m in listed] == [TAG] and listed[0].details.format == "gguf"
    assert listed[0].digest.startswith("sha256:")
    shown = client.show(REF)
    assert shown.details.family == "llama" and shown.details.quantization_level == "Q4_1"
    assert shown.modelinfo["general.architecture"] == "llama"
    running = client.ps().models
    # one entry per runner: a chat runner, and an embedding runner when an embeddings request came first
    assert {m.model for m in running} == {TAG} and {m.digest for m in running} == {listed[0].digest}


def test_version(http: httpx.Client) -> None:
    assert http.get("/api/version").json() == {"version": "0.1.0"}


def test_errors_as_dmr_answers_them(http: httpx.Client) -> None:
    """Unknown model ≠ 200 (DMR's scheduler text), malformed JSON ≠ 200, empty messages ≠ 500."""
    unknown = http.post("/api/chat", json={"model": "ai/nope", "messages": HI, "stream": False})
    assert (unknown.status_code, unknown.text) == (
        404, """error while getting model: get model '"ai/nope"': model not found\n""")
    assert http.post("/api/generate", json={"model": "ai/nope", "prompt": "x"}).status_code == 404
    bad = http.post("/api/chat", content=b"{bad json")
    assert bad.status_code == 400 and bad.text.startswith("Invalid request: invalid character")
    assert http.post("/api/show", content=b"").text == "Invalid request: EOF\n"
    wrong_type = http.post("/api/show", json={"model": 5})
    assert wrong_type.text == ("Invalid request: json: cannot unmarshal number into Go struct field "
                               "ShowRequest.model of type string\n")
    empty = http.post("/api/chat", json={"model": REF, "messages": [], "stream": False})
    assert empty.status_code < 500 and "error" in empty.json()
    missing = http.post("/api/show", json={"name": "ai/nope"})
    assert missing.status_code == 404 and missing.text.startswith("Model not found: error while getting model")


def test_ollama_client_sees_errors(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="ai/nope", messages=HI)
    assert caught.value.status_code == 404


def test_pull_and_delete_a_second_tag(client: ollama.Client, http: httpx.Client) -> None:
    """Pull streams Ollama's status lines and ends with success; delete then untags, and a second
    delete is DMR's 500. The primary tag (used by every other test) is left alone."""
    statuses = [p.status for p in client.pull("ai/smollm2:latest", stream=True)]
    assert statuses[-1] == "success"  # the file is already in the store: DMR's "cached" pull, no progress
    assert all(s.startswith("pulling") for s in statuses[:-1])
    assert client.pull("ai/smollm2:latest").status == "success"  # stream=False: one object
    assert {m.model for m in client.list().models} == {TAG, "docker.io/ai/smollm2:latest"}
    assert client.delete("ai/smollm2:latest")["status"] == "success"
    assert [m.model for m in client.list().models] == [TAG]
    again = http.request("DELETE", "/api/delete", json={"model": "ai/smollm2:latest"})
    assert (again.status_code, again.text) == (
        500, "Failed to delete model: error while deleting model: model not found\n")


def test_pull_of_a_model_embedded_mode_cannot_get(client: ollama.Client, http: httpx.Client) -> None:
    resp = http.post("/api/pull", json={"model": "ai/llama3.2"})
    assert resp.status_code == 500
    assert resp.json() == {"error": "Failed to pull model: error while pulling model: model not found"}
    with pytest.raises(ollama.ResponseError):
        client.pull("ai/llama3.2")


def test_generate_without_prompt_unloads_unless_kept_alive(http: httpx.Client) -> None:
    """DMR's quirk: an empty prompt with a zero *or absent* keep_alive unloads; otherwise only `{}`."""
    http.post("/api/generate", json={"model": REF, "prompt": "Hi", "stream": False, "options": {"num_predict": 1}})
    assert http.post("/api/generate", json={"model": REF, "keep_alive": "5m"}).json() == {}
    assert http.get("/api/ps").json()["models"]
    assert http.post("/api/generate", json={"model": REF}).json() == {}
    assert http.get("/api/ps").json() == {"models": []}


# -- translations ---------------------------------------------------------------------------------------


@pytest.mark.fast  # pure: no server
def test_tool_calls_become_ollamas() -> None:
    calls = [{"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
             {"id": "b", "type": "function", "function": {"name": "g", "arguments": '{"x"'}}]
    assert api.ollama_tool_calls(calls) == [
        {"id": "a", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}},
        {"id": "b", "function": {"index": 1, "name": "g", "arguments": '{"x"'}}]


@pytest.mark.fast  # pure: no server
def test_messages_and_options_become_a_chat_body() -> None:
    body = {"messages": [{"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "f", "arguments": {"x": 1}, "index": 0}}]},
             {"role": "tool", "content": "42", "tool_call_id": "a"},
             {"role": "user", "content": "look", "images": ["iVBORw0KGgo="]}],
            "options": {"num_predict": 5, "temperature": 0, "num_ctx": 4096, "seed": 3}, "stream": False}
    chat = api.to_chat(body, "m", generate=False)
    assert chat["messages"][0]["tool_calls"] == [
        {"id": "", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}]
    assert chat["messages"][1] == {"role": "tool", "content": "42", "tool_call_id": "a"}
    assert chat["messages"][2]["content"][1] == {"type": "image_url",
                                                 "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert (chat["max_tokens"], chat["temperature"], chat["seed"], chat["stream"]) == (5, 0, 3, False)
    assert "num_ctx" not in chat
    assert api.to_chat({"prompt": "p"}, "m", generate=True)["messages"] == [{"role": "user", "content": "p"}]


@pytest.mark.fast  # pure: no server
def test_pull_progress_becomes_ollama_status() -> None:
    layer = {"id": "sha256:" + "ab" * 32, "size": 100, "current": 40}
    assert api.pull_status({"type": "progress", "layer": layer}) == {
        "status": "pulling abababababab", "digest": layer["id"], "total": 100, "completed": 40}
    assert api.pull_status({"type": "progress", "layer": {"id": "", "size": 9, "current": 0}}) == {
        "status": "pulling manifest", "total": 9}
    assert api.pull_status({"type": "success", "message": "Model pulled successfully"}) == {"status": "success"}
    assert api.pull_status({"type": "error", "message": "boom"}) == {"error": "boom"}


@pytest.mark.fast  # pure: no server
def test_go_time() -> None:
    assert api.go_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)).endswith(("Z", ":00"))
    stamp = api.go_time(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC))
    assert ".12" in stamp and ".120" not in stamp
