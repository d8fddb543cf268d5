"""Concurrent clients queue and never disturb each other; a client that leaves frees the model."""

from __future__ import annotations

import threading
import time

import httpx

from .conftest import REF, Session

PROMPTS = ["Name a colour.", "Name a fruit.", "Name an animal.", "Name a country."]


def _ask(base_url: str, prompt: str) -> str:
    body = {"model": REF, "messages": [{"role": "user", "content": prompt}], "max_tokens": 6, "temperature": 0}
    resp = httpx.post(base_url + "/engines/v1/chat/completions", json=body, timeout=120)
    resp.raise_for_status()
    return str(resp.json()["choices"][0]["message"]["content"])


def test_four_clients_three_requests_each(pulled: Session) -> None:
    solo = {p: _ask(pulled.base_url, p) for p in PROMPTS}  # each prompt alone: the expected answer
    assert len(set(solo.values())) > 1, solo  # different prompts, different greedy answers
    answers: dict[str, list[str]] = {p: [] for p in PROMPTS}
    errors: list[BaseException] = []

    def client(prompt: str) -> None:
        try:
            for _ in range(3):
                answers[prompt].append(_ask(pulled.base_url, prompt))
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(p,)) for p in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=110)
    assert not errors, errors
    for prompt in PROMPTS:
        assert answers[prompt] == [solo[prompt]] * 3, prompt


def test_client_leaving_mid_stream_frees_the_model(pulled: Session) -> None:
    body = {"model": REF, "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
            "max_tokens": 4000, "stream": True, "temperature": 0.9, "seed": 1}
    with httpx.Client(base_url=pulled.base_url, timeout=60) as http:
        got = 0
        with http.stream("POST", "/engines/v1/chat/completions", json=body) as resp:
            for line in resp.iter_lines():
                got += line.startswith("data: {")
                if got >= 4:
                    break  # leave: closing the response closes the connection
        assert got >= 4
    t0 = time.perf_counter()
    answer = _ask(pulled.base_url, PROMPTS[0])
    waited = time.perf_counter() - t0
    assert answer
    # 4000 tokens would take minutes; the next request must not wait for them.
    assert waited < 5, f"the next request waited {waited:.1f} s"
    runners = httpx.get(pulled.base_url + "/engines/ps").json()
    assert not any(r.get("in_use") for r in runners)


def test_client_leaving_while_queued_is_skipped(pulled: Session) -> None:
    """A non-streaming request whose client gives up is cancelled too, queued or running."""
    long = {"model": REF, "messages": [{"role": "user", "content": "Write a very long story."}],
            "max_tokens": 4000, "temperature": 0.9, "seed": 2}
    try:
        httpx.post(pulled.base_url + "/engines/v1/chat/completions", json=long, timeout=1.0)
    except httpx.TimeoutException:
        pass
    t0 = time.perf_counter()
    assert _ask(pulled.base_url, PROMPTS[1])
    assert time.perf_counter() - t0 < 5
