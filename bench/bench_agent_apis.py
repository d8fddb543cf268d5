"""Time to first streamed token through the agent APIs vs chat completions, side by side in one run.

Codex speaks the Responses API and Claude Code Anthropic Messages; the embedded server
translates both onto its own chat completions. This prints what the translation adds to the
time to the first text token (goal: ≤ 5 ms each), for the same prompt and model, with the
three paths interleaved in rounds (each first in turn) so a noisy moment hits all alike.
Prints, never fails. Run: .venv/bin/python bench/bench_agent_apis.py [--runs N]. It uses a
temporary LABKIT_HOME and a free port, never the learner's state or 12434.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import free_port  # noqa: E402

os.environ["LABKIT_HOME"] = tempfile.mkdtemp(prefix="labkit-bench-")
os.environ["LABKIT_DMR_PORT"] = str(free_port())  # before labkit is imported: never the learner's 12434

import httpx  # noqa: E402

from labkit.dmr import catalog, service  # noqa: E402
from labkit.dmr.store import Store  # noqa: E402

REF = catalog.PRIMARY_REFERENCE
TOKENS = 16


def prompt(i: int) -> str:
    # A different first line per run, so no path reuses the previous prompt's cached prefix.
    return f"Run {i}. Name three colours."


def first_text(client: httpx.Client, path: str, body: dict, is_text: Callable[[dict], bool]) -> float:
    """Seconds from sending ``body`` to the first SSE data line that carries text."""
    t0 = time.perf_counter()
    first = 0.0
    with client.stream("POST", path, json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not first and line.startswith("data: {") and is_text(json.loads(line[6:])):
                first = time.perf_counter() - t0
    return first


def chat(client: httpx.Client, i: int) -> float:
    body = {"model": REF, "messages": [{"role": "user", "content": prompt(i)}], "max_tokens": TOKENS,
            "temperature": 0, "stream": True}
    return first_text(client, "/engines/v1/chat/completions", body,
                      lambda d: bool(d.get("choices") and d["choices"][0]["delta"].get("content")))


def responses(client: httpx.Client, i: int) -> float:
    body = {"model": REF, "input": prompt(i), "max_output_tokens": TOKENS, "temperature": 0, "stream": True}
    return first_text(client, "/v1/responses", body,
                      lambda d: d.get("type") == "response.output_text.delta" and bool(d.get("delta")))


def messages(client: httpx.Client, i: int) -> float:
    body = {"model": REF, "messages": [{"role": "user", "content": prompt(i)}], "max_tokens": TOKENS,
            "temperature": 0, "stream": True}
    return first_text(client, "/anthropic/v1/messages", body,
                      lambda d: d.get("type") == "content_block_delta" and bool(d["delta"].get("text")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    Store().pull(REF)
    service.start()
    paths = {"chat completions": chat, "Responses": responses, "Anthropic Messages": messages}
    times: dict[str, list[float]] = {name: [] for name in paths}
    with httpx.Client(base_url=service.base_url(), timeout=120) as client:
        chat(client, -1)  # warm: the model is loaded and has run once
        for i in range(args.runs):
            order = list(paths.items())
            order = order[i % len(order):] + order[:i % len(order)]
            for name, run in order:
                times[name].append(run(client, i * 10 + len(times[name])))
    service.stop()
    base = statistics.median(times["chat completions"])
    print(f"model {REF}, time to first streamed text token, median of {args.runs} interleaved rounds")
    for name, values in times.items():
        added = "" if name == "chat completions" else f"   added {(statistics.median(values) - base) * 1000:+.1f} ms"
        print(f"  {name:20} {statistics.median(values) * 1000:7.1f} ms"
              f"  (range {min(values) * 1000:.0f}–{max(values) * 1000:.0f}){added}")
    worst = max(statistics.median(times[n]) - base for n in paths if n != "chat completions")
    print(f"goal: each translation adds ≤ 5 ms: {'met' if worst <= 0.005 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
