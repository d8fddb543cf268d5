"""Real llama.cpp inference through the HTTP API, with the OpenAI SDK and httpx as clients."""

from __future__ import annotations

import json
import math
import time

import httpx
import openai
import pytest

from .conftest import REF, TAG, Session

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def sdk(pulled: Session) -> openai.OpenAI:
    return openai.OpenAI(base_url=pulled.base_url + "/engines/llama.cpp/v1", api_key="unused", timeout=60)


@pytest.fixture
def greedy(sdk: openai.OpenAI) -> openai.types.chat.ChatCompletion:
    """One greedy answer, the reference the other tests compare against."""
    return sdk.chat.completions.create(model=REF, messages=QUESTION, max_tokens=12, temperature=0)


def test_chat_completion(greedy: openai.types.chat.ChatCompletion) -> None:
    assert greedy.object == "chat.completion"
    assert greedy.model == REF  # echoes the request's model
    choice = greedy.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = greedy.usage
    assert usage is not None and usage.prompt_tokens > 5
    assert 1 <= usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if choice.finish_reason == "length":
        assert usage.completion_tokens == 12


def test_greedy_is_deterministic_and_spellings_agree(sdk: openai.OpenAI, greedy, http: httpx.Client) -> None:
    model_id = http.get("/models").json()[0]["id"]
    for ref in (TAG, model_id, model_id[7:19]):
        again = sdk.chat.completions.create(model=ref, messages=QUESTION, max_tokens=12, temperature=0)
        assert again.choices[0].message.content == greedy.choices[0].message.content, ref
        assert again.model == ref


def test_stream_matches_and_arrives_incrementally(pulled: Session, greedy) -> None:
    body = {"model": REF, "messages": QUESTION, "max_tokens": 12, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    arrivals: list[tuple[float, dict]] = []
    t0 = time.perf_counter()
    with httpx.stream("POST", pulled.base_url + "/engines/v1/chat/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        lines = []
        for line in resp.iter_lines():
            if line:
                lines.append(line)
                if line.startswith("data: {"):
                    arrivals.append((time.perf_counter() - t0, json.loads(line[6:])))
    assert lines[-1] == "data: [DONE]"
    chunks = [c for _, c in arrivals]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    content_times = [t for t, c in arrivals if c["choices"] and c["choices"][0]["delta"].get("content")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == greedy.choices[0].message.content
    # Incremental: the tokens arrive spread over the generation, not in one burst at the end.
    assert len(content_times) >= 5
    assert len({round(t, 3) for t in content_times}) >= 5
    assert content_times[-1] - content_times[0] > 0.3 * content_times[-1]
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish[-1]["choices"][0]["finish_reason"] == greedy.choices[0].finish_reason
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"] == greedy.usage.model_dump(exclude_none=True)


def test_sdk_streaming(sdk: openai.OpenAI, greedy) -> None:
    stream = sdk.chat.completions.create(model=REF, messages=QUESTION, max_tokens=12, temperature=0, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == greedy.choices[0].message.content


def test_max_tokens_stop_and_seed(sdk: openai.OpenAI, greedy) -> None:
    full = greedy.choices[0].message.content
    words = full.split()
    assert len(words) >= 2, full
    stop_word = words[1]
    cut = sdk.chat.completions.create(model=REF, messages=QUESTION, max_tokens=12, temperature=0, stop=[stop_word])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == full[: full.index(stop_word)]
    short = sdk.chat.completions.create(model=REF, messages=QUESTION, max_tokens=3, temperature=0)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    assert full.startswith(short.choices[0].message.content)
    hot = dict(model=REF, messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=10,
               temperature=1.2, top_p=1.0)
    first, second = (sdk.chat.completions.create(seed=7, **hot) for _ in range(2))
    assert first.choices[0].message.content == second.choices[0].message.content  # same seed, same sample
    others = {sdk.chat.completions.create(seed=s, **hot).choices[0].message.content for s in (8, 9, 10)}
    assert len(others | {first.choices[0].message.content}) > 1  # the seed really drives sampling


def test_top_p_is_honoured(sdk: openai.OpenAI, greedy) -> None:
    """A tiny nucleus leaves only the most likely token: any seed, even at a high temperature, is greedy."""
    for seed in (1, 2):
        nucleus = sdk.chat.completions.create(model=REF, messages=QUESTION, max_tokens=12, temperature=1.5,
                                              top_p=1e-6, seed=seed)
        assert nucleus.choices[0].message.content == greedy.choices[0].message.content


def test_chat_uses_the_gguf_chat_template(http: httpx.Client, greedy) -> None:
    """The template stored in the GGUF, rendered by hand and sent as a raw prompt, gives the same answer."""
    import jinja2

    gguf = http.get("/models").json()[0]["config"]["gguf"]
    template = jinja2.Environment().from_string(gguf["tokenizer.chat_template"])
    prompt = template.render(messages=QUESTION, add_generation_prompt=True, bos_token="", eos_token="")
    assert "<|im_start|>assistant" in prompt
    raw = http.post("/v1/completions", json={"model": REF, "prompt": prompt, "max_tokens": 12,
                                             "temperature": 0}).json()
    assert raw["choices"][0]["text"] == greedy.choices[0].message.content
    assert raw["usage"]["prompt_tokens"] == greedy.usage.prompt_tokens


def test_text_completion(http: httpx.Client) -> None:
    body = {"model": REF, "prompt": "The capital of France is", "max_tokens": 5, "temperature": 0}
    resp = http.post("/v1/completions", json=body).json()
    assert resp["object"] == "text_completion" and resp["choices"][0]["text"].strip()
    assert resp["usage"]["completion_tokens"] <= 5
    streamed = []
    with http.stream("POST", "/engines/llama.cpp/v1/completions", json={**body, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                streamed.append(json.loads(line[6:])["choices"][0]["text"])
    assert "".join(streamed) == resp["choices"][0]["text"]


def test_embeddings(sdk: openai.OpenAI) -> None:
    result = sdk.embeddings.create(model=REF, input=["The cat sat on the mat.", "A cat is sitting on a mat.",
                                                     "Quarterly revenue grew by four percent."])
    vectors = [d.embedding for d in result.data]
    assert [d.index for d in result.data] == [0, 1, 2]
    assert all(len(v) == 576 for v in vectors)  # SmolLM2-135M's embedding width
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vectors)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    assert result.usage.prompt_tokens > 10


def test_runner_listed_after_use(http: httpx.Client) -> None:
    runners = http.get("/engines/ps").json()
    modes = {r["mode"] for r in runners}
    assert "completion" in modes
    assert all(r["backend_name"] == "llama.cpp" and not r.get("in_use") for r in runners)
