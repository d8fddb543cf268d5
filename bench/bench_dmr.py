"""Embedded Docker Model Runner vs llama-cpp-python in-process, side by side in one run.

Prints (never fails): tokens/s of the same 128-token greedy chat completion through the HTTP
server and in-process, their ratio (goal ≥ 0.95); time to first token both ways (goal: HTTP
adds ≤ 5 ms); and the cold start, `labkit up` → first answered request (goal ≤ 3 s).

Run: .venv/bin/python bench/bench_dmr.py [--runs N]. It uses a temporary LABKIT_HOME and a
free port, never the learner's state or 12434.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import free_port  # noqa: E402

os.environ["LABKIT_HOME"] = tempfile.mkdtemp(prefix="labkit-bench-")
os.environ["LABKIT_DMR_PORT"] = str(free_port())  # before labkit is imported: never the learner's 12434

import httpx  # noqa: E402

from labkit.dmr import catalog, engine, service  # noqa: E402
from labkit.dmr.store import Store  # noqa: E402

REF = catalog.PRIMARY_REFERENCE
TOKENS = 128
# SmolLM2 ends a turn with <|im_end|> (2) and may emit <|endoftext|> (0): banned on both sides
# so every run generates exactly TOKENS tokens.
NO_EOS = {"0": -100.0, "2": -100.0}


@dataclass
class Run:
    ttft: float  # seconds to the first content token
    total: float  # seconds to the last one
    tokens: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.total


def messages(i: int) -> list[dict[str, str]]:
    # A different first line per run, so neither side reuses the previous prompt's KV cache.
    return [{"role": "user", "content": f"Run {i}. Count from 1 to 500, separated by commas."}]


def timed(chunks: Iterator[str]) -> Run:
    t0 = time.perf_counter()
    first = None
    n = 0
    for _ in chunks:
        n += 1
        if first is None:
            first = time.perf_counter() - t0
    return Run(first or 0.0, time.perf_counter() - t0, n)


def http_chunks(client: httpx.Client, i: int) -> Iterator[str]:
    body = {"model": REF, "messages": messages(i), "max_tokens": TOKENS, "temperature": 0, "stream": True,
            "logit_bias": NO_EOS}
    with client.stream("POST", "/engines/llama.cpp/v1/chat/completions", json=body) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: {"):
                choices = json.loads(line[6:])["choices"]
                if choices and choices[0]["delta"].get("content"):
                    yield choices[0]["delta"]["content"]


def local_chunks(llm: object, i: int) -> Iterator[str]:
    stream = llm.create_chat_completion(  # type: ignore[attr-defined]
        messages=messages(i), max_tokens=TOKENS, temperature=0, stream=True,
        logit_bias={int(k): v for k, v in NO_EOS.items()})
    for chunk in stream:
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            yield chunk["choices"][0]["delta"]["content"]


def tokens_of(base: str, i: int) -> int:
    """Completion tokens of the same request, as the server counts them (chunks can hold several)."""
    body = {"model": REF, "messages": messages(i), "max_tokens": TOKENS, "temperature": 0, "logit_bias": NO_EOS}
    return int(httpx.post(base + "/engines/v1/chat/completions", json=body, timeout=120).json()["usage"]
               ["completion_tokens"])


def cold_start(base: str) -> tuple[float, float]:
    """(seconds until the server answers, seconds until the first chat answer), from `labkit up`."""
    service.stop()
    t0 = time.perf_counter()
    service.start()
    ready = time.perf_counter() - t0
    body = {"model": REF, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    httpx.post(base + "/engines/v1/chat/completions", json=body, timeout=60).raise_for_status()
    return ready, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    base = service.base_url()
    print(f"model {REF}, {TOKENS} greedy tokens, {args.runs} runs each, llama.cpp threads {engine.default_threads()}")
    Store().pull(REF)
    colds = [cold_start(base) for _ in range(args.runs)]
    path = str(catalog.SHIPPED[0].locate())
    llm = engine.load_llama(path, "completion", 8192)
    # One client for all requests, as an SDK keeps one: a new httpx client costs ~40 ms by itself
    # (it builds a TLS context), which is the client's cost, not the server's.
    client = httpx.Client(base_url=base, timeout=120)
    http_runs: list[Run] = []
    local_runs: list[Run] = []
    for i in range(args.runs):  # interleaved, each side first in turn, so a noisy moment hits both alike
        sides = [(http_runs, http_chunks(client, 2 * i)), (local_runs, local_chunks(llm, 2 * i + 1))]
        for runs, chunks in sides if i % 2 == 0 else reversed(sides):
            runs.append(timed(chunks))
    count = tokens_of(base, 99)
    service.stop()

    def med(values: list[float]) -> float:
        return statistics.median(values)

    # Chunks are not tokens (a chunk may hold a multi-byte character's tokens): use the counted tokens.
    http_tps = med([count / r.total for r in http_runs])
    local_tps = med([count / r.total for r in local_runs])
    http_ttft, local_ttft = med([r.ttft for r in http_runs]), med([r.ttft for r in local_runs])
    def spread(values: list[float]) -> str:
        return f"{min(values):.0f}–{max(values):.0f}"

    print(f"{'median of ' + str(args.runs):24}{'HTTP':>12}{'in-process':>14}{'ratio / added':>16}")
    print(f"{'tokens/s (128 tokens)':24}{http_tps:12.1f}{local_tps:14.1f}{http_tps / local_tps:16.3f}")
    print(f"{'time to first token ms':24}{http_ttft * 1000:12.1f}{local_ttft * 1000:14.1f}"
          f"{(http_ttft - local_ttft) * 1000:+16.1f}")
    print(f"{'  range tokens/s':24}{spread([count / r.total for r in http_runs]):>12}"
          f"{spread([count / r.total for r in local_runs]):>14}")
    print(f"{'  range TTFT ms':24}{spread([r.ttft * 1000 for r in http_runs]):>12}"
          f"{spread([r.ttft * 1000 for r in local_runs]):>14}")
    ready, first = med([c[0] for c in colds]), med([c[1] for c in colds])
    print(f"cold start: server answers after {ready:.2f} s, first chat answer after {first:.2f} s "
          f"(median of {args.runs}; goal ≤ 3 s)")
    print(f"goals: ratio ≥ 0.95 {'met' if http_tps / local_tps >= 0.95 else 'NOT met'}; "
          f"TTFT added ≤ 5 ms {'met' if http_ttft - local_ttft <= 0.005 else 'NOT met'}; "
          f"cold start ≤ 3 s {'met' if first <= 3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
