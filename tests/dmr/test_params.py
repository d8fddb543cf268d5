"""Request bodies → llama-cpp-python arguments: llama-server's defaults, and its 400s for bad values."""

from __future__ import annotations

import pytest

from labkit.dmr import params

pytestmark = pytest.mark.fast

MESSAGES = [{"role": "user", "content": "hi"}]


def test_defaults_are_llama_servers() -> None:
    args, options = params.chat({"messages": MESSAGES}, "m")
    assert (args["temperature"], args["top_p"], args["top_k"], args["min_p"]) == (0.8, 0.95, 40, 0.05)
    assert args["seed"] is None and args["stop"] == [] and args["model"] == "m"
    assert args["max_tokens"] == params.UNSET_MAX_TOKENS == 512  # the embedded cap (see params.py)
    assert not options.stream and not options.include_usage


def test_limits_and_spellings() -> None:
    assert params.chat({"messages": MESSAGES, "max_tokens": -1}, "m")[0]["max_tokens"] is None
    assert params.chat({"messages": MESSAGES, "max_completion_tokens": 7}, "m")[0]["max_tokens"] == 7
    assert params.chat({"messages": MESSAGES, "stop": "x", "seed": 3}, "m")[0]["stop"] == ["x"]
    assert params.chat({"messages": MESSAGES, "logit_bias": {"2": -100}}, "m")[0]["logit_bias"] == {2: -100.0}
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert params.chat({"messages": parts}, "m")[0]["messages"] == [{"role": "user", "content": "ab"}]
    _, options = params.chat({"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}, "m")
    assert options.stream and options.include_usage


@pytest.mark.parametrize("body", [
    {"messages": MESSAGES, "temperature": "hot"}, {"messages": MESSAGES, "max_tokens": 0},
    {"messages": MESSAGES, "max_tokens": 1.5}, {"messages": MESSAGES, "stop": [1]}, {"messages": MESSAGES, "n": 2},
    {"messages": []}, {"messages": [{"content": "no role"}]}, {"messages": MESSAGES, "stream": "yes"},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
])
def test_bad_values_are_refused(body: dict) -> None:
    with pytest.raises(params.BadParam):
        params.chat(body, "m")


def test_completion_and_embedding_inputs() -> None:
    assert params.completion({"prompt": ["one"]}, "m")[0]["prompt"] == "one"
    assert params.completion({"prompt": [1, 2, 3]}, "m")[0]["prompt"] == [1, 2, 3]
    with pytest.raises(params.BadParam):
        params.completion({}, "m")
    assert params.embedding({"input": "x"}) == ["x"]
    with pytest.raises(params.BadParam):
        params.embedding({"input": [1, 2]})
