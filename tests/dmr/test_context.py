"""Context overflow (llama-server's exact 400) and `_configure` (per-model context size), for real."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from labkit._core import paths
from labkit.dmr import configure
from labkit.dmr.inference import InferenceError
from labkit.dmr.server import ModelServer
from labkit.dmr.store import Store
from labkit.dmr.supervisor import Engine

from .conftest import REF, TAG, Session

LONG = "hello " * 9000  # about 9000 tokens: more than the default 8192


def _overflow(resp: httpx.Response, n_ctx: int) -> int:
    """Checks llama-server's body word for word; returns the prompt's token count."""
    assert resp.status_code == 400 and resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    n = error["n_prompt_tokens"]
    assert error == {"code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": n, "n_ctx": n_ctx,
                     "message": f"request ({n} tokens) exceeds the available context size ({n_ctx} tokens), "
                                "try increasing it"}
    assert n >= n_ctx
    return int(n)


@pytest.fixture
def reset_config(http: httpx.Client) -> Iterator[httpx.Client]:
    """Configure freely; the model gets its default config back afterwards (other tests share it)."""
    yield http
    assert http.post("/engines/_configure", json={"model": REF}).status_code == 202


def test_overflow_on_chat_and_completions(http: httpx.Client) -> None:
    chat = {"model": REF, "messages": [{"role": "user", "content": LONG}], "max_tokens": 5}
    n_chat = _overflow(http.post("/engines/v1/chat/completions", json=chat), 8192)
    _overflow(http.post("/v1/chat/completions", json={**chat, "stream": True}), 8192)
    n_text = _overflow(http.post("/engines/llama.cpp/v1/completions", json={"model": REF, "prompt": LONG}), 8192)
    assert n_chat > n_text > 9000 - 50
    ok = http.post("/v1/chat/completions", json={"model": REF, "messages": [{"role": "user", "content": "Hi"}],
                                                 "max_tokens": 3})
    assert ok.status_code == 200  # the engine is fine afterwards


def test_chat_chunks_raises_the_typed_error(pulled: Session) -> None:
    """The seam the other APIs use gets InferenceError with llama-server's body to pass on
    (a second, in-process model server with its own engine process)."""
    server = ModelServer(Store(), Engine(), preload=False)

    async def drain() -> None:
        async for _ in server.chat_chunks({"model": REF, "messages": [{"role": "user", "content": LONG}]}):
            pass

    server.engine.start()
    try:
        with pytest.raises(InferenceError) as caught:
            asyncio.run(drain())
    finally:
        server.engine.stop()
    error = caught.value
    assert (error.status, error.kind) == (400, "exceed_context_size_error")
    assert error.body is not None and error.body["error"]["n_ctx"] == 8192
    assert error.message == error.body["error"]["message"]


def test_configure_smaller_context_reloads_the_runner(reset_config: httpx.Client) -> None:
    http = reset_config
    assert http.post("/engines/_configure", json={"model": REF, "context-size": 512}).status_code == 202
    prompt = "hello " * 600
    _overflow(http.post("/v1/chat/completions", json={"model": REF, "messages": [{"role": "user", "content": prompt}],
                                                       "max_tokens": 3}), 512)
    short = http.post("/v1/chat/completions", json={"model": REF, "max_tokens": 3,
                                                    "messages": [{"role": "user", "content": "Hi"}]})
    assert short.status_code == 200 and short.json()["choices"][0]["message"]["content"]
    shown = http.get("/engines/_configure", params={"model": REF}).json()
    model_id = http.get("/models").json()[0]["id"]
    assert shown == [{"Backend": "llama.cpp", "Model": TAG, "ModelID": model_id, "Mode": "completion",
                      "Config": {"context-size": 512}}]
    saved = json.loads((paths.state_dir("models") / configure.FILENAME).read_text())
    assert {"backend": "llama.cpp", "model_id": model_id, "mode": "completion",
            "config": {"context-size": 512}} in saved["configs"]


def test_configure_larger_context_and_back_to_default(reset_config: httpx.Client) -> None:
    http = reset_config
    resp = http.post("/engines/llama.cpp/_configure", json={"model": REF, "context-size": 12288, "keep_alive": "10m"})
    assert resp.status_code == 202 and resp.content == b""
    prompt = "hello " * 13000
    _overflow(http.post("/v1/completions", json={"model": REF, "prompt": prompt, "max_tokens": 3}), 12288)
    assert http.get("/engines/_configure").json()[0]["Config"] == {"context-size": 12288, "keep_alive": "10m0s"}
    assert http.post("/engines/_configure", json={"model": REF}).status_code == 202  # replaces the whole config
    assert http.get("/engines/_configure").json()[0]["Config"] == {}
    _overflow(http.post("/v1/completions", json={"model": REF, "prompt": LONG, "max_tokens": 3}), 8192)


def test_configure_errors_and_filters(http: httpx.Client) -> None:
    assert http.post("/engines/nope/_configure", json={"model": REF}).text == "backend not found\n"
    for body in (b"{not json", b'{"context-size": "big"}', b'{"mode": "fast"}', b'[1]'):
        resp = http.post("/engines/_configure", content=body)
        assert (resp.status_code, resp.text) == (400, "invalid request\n"), body
    flags = http.post("/engines/_configure", json={"model": REF, "runtime-flags": ["--threads", "4"]})
    assert flags.status_code == 500 and "--threads" in flags.text
    assert http.get("/engines/_configure", params={"model": "ai/not-pulled"}).json() == []
    assert http.get("/engines/_configure").headers["content-type"].startswith("application/json")
