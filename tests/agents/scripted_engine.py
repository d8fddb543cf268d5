"""A scripted engine process: labkit.dmr.backend's wire protocol, a fixed script instead of llama.cpp.

Test-only (nothing in the course or ``labkit up`` can start it): the model server is labkit's
real front (``create_app(engine=Engine(argv=[python, THIS_FILE]))``), so every translation an
agent's request goes through (Responses in both DMR behaviours, Anthropic Messages, the tool
rendering of ``labkit.dmr.params``/``toolcalls``) is the real one; only the text a model would
generate is replaced by a script that drives a coding agent through one tool round trip:

* no tool result in the conversation yet, and a shell tool offered → one ``<tool_call>`` to that
  tool (``exec_command``/``cmd`` for Codex, ``Bash``/``command`` for Claude Code, found in the
  ``<tools>`` block that ``toolcalls.render`` put into the system message) that writes ``fib.py``
  and runs it with python3;
* a ``<tool_response>`` in the conversation → a short final answer that quotes what the tool
  printed (``Done: fib.py prints 0 1 1 2 …`` when the output holds the ten numbers);
* anything else (no tools offered, e.g. a side request) → a short plain answer.

Like ``labkit.dmr.engine._generate``, the text goes through ``toolcalls.stream_calls`` when the
job carries ``tool_call`` (the calls are parsed out of the text in the engine process); grammars
are ignored. ``tokenize`` jobs get a count, ``load``/``unload`` keep a runner list as the real
worker does. Run as ``python scripted_engine.py --fd N --threads T`` (the supervisor's argv).
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

from labkit.dmr import toolcalls

FIB = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
FIB_SOURCE = "a, b = 0, 1\nfor _ in range(10):\n    print(a)\n    a, b = b, a + b\n"
SHELL_COMMAND = f"cat > fib.py <<'EOF'\n{FIB_SOURCE}EOF\npython3 fib.py"
# The shell tool of each agent and the name of its command argument, in the order they are looked for.
SHELL_TOOLS = (("exec_command", "cmd"), ("Bash", "command"), ("shell", "command"), ("local_shell", "command"))
PIECE = 7  # characters per streamed chunk: the call tag is split across chunks, as a model's tokens are


def offered_tools(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """name → function object, from the ``<tools>`` block ``toolcalls.system_block`` wrote."""
    tools: dict[str, dict[str, Any]] = {}
    for message in messages:
        if message.get("role") != "system":
            continue
        found = re.search(r"<tools>\n(.*?)\n</tools>", message.get("content") or "", re.S)
        for line in found[1].splitlines() if found else []:
            try:
                function = json.loads(line)["function"]
            except (ValueError, KeyError, TypeError):
                continue
            tools[function["name"]] = function
    return tools


def tool_results(messages: list[dict[str, Any]]) -> list[str]:
    """The tool outputs the conversation holds (rendered as ``<tool_response>`` user turns)."""
    out = []
    for message in messages:
        if message.get("role") == "user":
            out += re.findall(r"<tool_response>\n(.*?)\n</tool_response>", message.get("content") or "", re.S)
    return out


def fib_in(text: str) -> bool:
    """Whether the ten numbers appear in order, one after the other, in ``text``."""
    numbers = [int(n) for n in re.findall(r"(?<![\w.])\d+(?![\w.])", text)]
    return any(numbers[i:i + len(FIB)] == FIB for i in range(len(numbers) - len(FIB) + 1))


def reply(messages: list[dict[str, Any]]) -> str:
    """The scripted model's answer to a rendered conversation."""
    results = tool_results(messages)
    if results:
        output = "\n".join(results)
        if fib_in(output):
            return "Done: fib.py prints " + " ".join(map(str, FIB))
        return "Done: fib.py ran, but printed: " + " ".join(output.split())[:300]
    tools = offered_tools(messages)
    for name, argument in SHELL_TOOLS:
        properties = tools.get(name, {}).get("parameters", {}).get("properties", {})
        if name in tools and argument in properties:
            return toolcalls.call_text(name, {argument: SHELL_COMMAND})
    return "OK"


def chunks(job_id: int, model: str, text: str, finish: str = "stop") -> Iterator[dict[str, Any]]:
    """llama-cpp-python's ``create_chat_completion(stream=True)`` chunks for ``text``."""
    base = {"id": f"chatcmpl-scripted-{job_id}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model}

    def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]}

    yield chunk({"role": "assistant"})
    for i in range(0, len(text), PIECE):
        yield chunk({"content": text[i:i + PIECE]})
    yield chunk({}, finish)


class ScriptedWorker:
    """The engine's jobs, answered from the script; one at a time, in arrival order."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.runners: dict[str, dict[str, Any]] = {}

    def _changed(self) -> None:
        self.send(("runners", list(self.runners.values())))

    def _load(self, model: Any, name: str) -> None:
        if model is not None and model.id not in self.runners:
            self.runners[model.id] = {"backend_name": "llama.cpp", "model_name": name or model.id,
                                      "mode": "completion", "keep_alive": "-1",
                                      "last_used": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
            self._changed()

    def run(self, fields: dict[str, Any], cancel: threading.Event) -> None:
        job_id, kind, params = fields["id"], fields["kind"], fields.get("params") or {}
        counts = {"prompt_tokens": 0, "completion_tokens": 0, "started": time.perf_counter(), "first_token": None,
                  "finished": 0.0}
        error: BaseException | None = None
        try:
            if kind == "unload":
                ids = params.get("ids")
                gone = [k for k in self.runners if ids is None or k in ids]
                for key in gone:
                    del self.runners[key]
                if gone:
                    self._changed()
                self.send(("item", job_id, len(gone)))
            elif kind == "load":
                self._load(fields.get("model"), fields.get("model_name", ""))
            elif kind == "tokenize":
                self._load(fields.get("model"), fields.get("model_name", ""))
                text = json.dumps(params.get("messages")) if "messages" in params else str(params.get("text", ""))
                self.send(("item", job_id, max(1, len(text) // 4)))
            elif kind == "chat":
                self._load(fields.get("model"), fields.get("model_name", ""))
                messages = params.get("messages") or []
                text = reply(messages)
                counts["prompt_tokens"] = max(1, len(json.dumps(messages)) // 4)
                stream: Iterator[dict[str, Any]] = chunks(job_id, fields.get("model_name", ""), text)
                if params.get("tool_call"):
                    stream = toolcalls.stream_calls(stream, params["tool_call"]["names"])
                for chunk in stream:
                    if cancel.is_set():
                        break
                    counts["completion_tokens"] += 1
                    counts["first_token"] = counts["first_token"] or time.perf_counter()
                    self.send(("item", job_id, chunk))
            else:
                error = ValueError(f"the scripted engine does not run {kind} jobs")
        except Exception as exc:  # noqa: BLE001 - reported to the front, as the real engine does
            error = ValueError(f"{type(exc).__name__}: {exc}")
        counts["finished"] = time.perf_counter()
        self.send(("done", job_id, counts, error))


def serve(conn: Connection) -> None:
    lock = threading.Lock()
    cancels: dict[int, threading.Event] = {}

    def send(message: tuple[Any, ...]) -> None:
        with lock:
            conn.send(message)

    worker = ScriptedWorker(send)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message[0] == "job":
            # The front sends one job at a time and waits for its "done"; a cancel arrives while it runs,
            # so the job runs on a thread and this loop keeps reading.
            cancel = cancels[message[1]["id"]] = threading.Event()
            threading.Thread(target=worker.run, args=(message[1], cancel), daemon=True).start()
        elif message[0] == "cancel" and message[1] in cancels:
            cancels[message[1]].set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a scripted stand-in for labkit's engine process (tests only)")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    serve(Connection(args.fd))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
