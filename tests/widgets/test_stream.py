"""The pure parts of the prompt panel, fast: the SSE parser, the line sink, the metrics, the state table.

The streams are what `curl -sN … -w '\\n%{http_code}\\n'` prints for the model server and for
the policy proxy; the panel itself, against the real lab, is in ``test_widgets``.
"""

from __future__ import annotations

import pytest

from labkit.widgets.prompt_state import PromptState
from labkit.widgets.stream import LineSink, Metrics, SseReply, parse_sse

STREAM = "\n".join([
    'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}',
    "",
    'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}',
    "",
    'data: {"choices":[{"index":0,"delta":{"content":"lo"}}]}',
    "",
    'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}',
    "",
    "data: [DONE]",
    "",
    "",
    "200",
    "",
])


def test_a_streamed_completion_is_its_text_usage_and_status():
    reply = parse_sse(STREAM)
    assert reply == SseReply(content="Hello", chunks=2, status=200, other=[], done=True,
                             usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7})


def test_each_line_gives_back_the_text_it_carried():
    reply = SseReply()
    deltas = [reply.feed_line(line) for line in STREAM.split("\n")]
    assert [d for d in deltas if d] == ["Hel", "lo"]
    assert reply.content == "Hello" and reply.chunks == 2


def test_the_proxys_403_body_is_kept_as_other_with_the_status():
    body = "Blocked by network policy: deny localhost:12434"
    assert parse_sse(f"{body}\n403\n") == SseReply(content="", chunks=0, status=403, other=[body])


def test_carriage_returns_and_blank_lines_are_ignored():
    reply = parse_sse('data: {"choices":[{"delta":{"content":"hi"}}]}\r\n\r\n\r\ndata: [DONE]\r\n200\r\n')
    assert (reply.content, reply.chunks, reply.status, reply.other, reply.done) == ("hi", 1, 200, [], True)


def test_lines_that_are_not_sse_events_are_kept_as_other():
    reply = parse_sse("data: not json\nerror: the engine crashed\ncurl: (7) Failed to connect\n1234\n000\n")
    assert reply.other == ["data: not json", "error: the engine crashed", "curl: (7) Failed to connect", "1234"]
    assert reply.status == 0 and reply.content == "" and not reply.done  # curl's 000: no HTTP answer at all


def test_a_chunk_without_content_is_not_counted():
    reply = parse_sse('data: {"choices":[{"delta":{"content":""}}]}\ndata: {"choices":[{"delta":{}}]}\n')
    assert (reply.content, reply.chunks, reply.other) == ("", 0, [])


def test_the_line_sink_skips_the_command_header_and_joins_split_lines():
    seen: list[str] = []
    sink = LineSink(seen.append)
    sink.write("$ sbx exec box curl …\n")
    sink.write("data: {\"a\"")
    assert seen == []  # half a line waits for its end
    sink.write(": 1}\nsecond\nthi")
    sink.write("rd\n")
    assert seen == ['data: {"a": 1}', "second", "third"]


def test_metrics_use_the_servers_token_count_when_it_sent_one():
    metrics = Metrics.measure(0.5, 2.5, chunks=4, usage={"completion_tokens": 9})
    assert metrics == Metrics(first_token_s=0.5, total_s=2.5, tokens=9, counted_from="usage")
    assert metrics.tokens_per_s == 4.0  # 8 tokens after the first, in 2 s
    assert metrics.line() == "first token 0.50 s · total 2.50 s · 9 tokens (usage) · 4.0 tokens/s"


@pytest.mark.parametrize("usage", [None, {}, {"completion_tokens": 0}, {"prompt_tokens": 5}])
def test_metrics_count_chunks_without_a_usage_count(usage):
    metrics = Metrics.measure(0.25, 1.25, chunks=3, usage=usage)
    assert metrics == Metrics(first_token_s=0.25, total_s=1.25, tokens=3, counted_from="chunks")
    assert metrics.line() == "first token 0.25 s · total 1.25 s · 3 tokens (counted chunks) · 2.0 tokens/s"


def test_metrics_without_a_first_token_have_no_speed():
    metrics = Metrics.measure(None, 1.0, chunks=0, usage=None)
    assert metrics.tokens_per_s is None
    assert metrics.line() == "first token — · total 1.00 s · 0 tokens (counted chunks) · — tokens/s"
    assert Metrics.measure(0.5, 0.9, chunks=1, usage=None).tokens_per_s is None  # one token: no rate


def test_each_state_draws_its_status_line_and_colour():
    assert [(s.line("✓ x" if s.ok else "✗ x"), s.ok) for s in PromptState] == [
        ("", None),
        ("… waiting for the first token", None),
        ("… streaming", None),
        ("✓ x", True),
        ("✗ x", False),
    ]


def test_a_send_moves_only_along_the_table():
    idle, waiting, streaming, done, failed = PromptState
    allowed = {(a, b) for a in PromptState for b in PromptState if a.may_become(b)}
    assert allowed == {
        (idle, waiting),
        (waiting, streaming), (waiting, done), (waiting, failed),
        (streaming, done), (streaming, failed),
        (done, waiting), (failed, waiting),
    }
    assert [s for s in PromptState if s.ended] == [done, failed]
