"""labkit's agent: a small coding agent for Step 8 in embedded mode.

In live mode the course runs Codex here. Codex needs a capable model; a 135M model cannot
drive it (measured: it loops for minutes), so embedded mode uses this agent instead. Like
Codex, it talks to the model with the OpenAI SDK and reads ``OPENAI_BASE_URL`` and
``OPENAI_API_KEY``; every request crosses the sandbox's proxy and shows up in the policy log.

The loop, with a hard step cap: ask the model for one Python program, write it to the
workspace, run it, and if it fails, show the model the error and ask again.

    python3 -m labkit.agent [--model M] [--max-steps N] [--workspace DIR] "TASK"

It is copied into sandboxes and runs there as a standalone file, so it imports nothing from
labkit: its two fix commands are spelled out here (a test checks they match ``labkit.fixes``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import openai
from openai.types.chat import ChatCompletionMessageParam

EXAMPLE_URL = "http://host.docker.internal:12434/engines/llama.cpp/v1"
SYSTEM = ("You are a Python programmer. Reply with one complete Python program that solves the task, "
          "in a single ```python code block. The program must print its result. "
          "It runs without a keyboard: do not use input().")
CODE_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
# Words that say "write a program" rather than what the program is about.
FILLER = {"write", "python", "script", "program", "that", "which", "prints", "print", "the", "first",
          "and", "with", "from", "whether", "numbers", "number", "using", "create", "simple", "small",
          "check", "answer", "result"}


class ModelUnreachable(Exception):
    """The model gave no answer (network, policy proxy, server error): exit 3, one line, no traceback."""


@dataclass
class Run:
    """What happened when the program ran."""

    ok: bool
    exit_code: int | None  # None: it was stopped by the timeout
    output: str
    seconds: float


def file_name(task: str) -> str:
    """A file name from the task's most telling word ("…Fibonacci numbers" → fibonacci.py).

    A name like ``random.py`` would shadow the standard-library module the program imports,
    so such names get a suffix.
    """
    words = [w for w in re.findall(r"[a-z]+", task.lower()) if len(w) > 2 and w not in FILLER]
    stem = max(words, key=len) if words else "program"
    return f"{stem}_task.py" if stem in sys.stdlib_module_names else f"{stem}.py"


def extract_code(reply: str) -> str | None:
    """The first complete fenced code block in the reply, or None."""
    match = CODE_BLOCK.search(reply)
    return match.group(1).strip() + "\n" if match and match.group(1).strip() else None


def ask(client: openai.OpenAI, model: str, messages: list[ChatCompletionMessageParam], temperature: float,
        args: argparse.Namespace) -> str:
    """Stream one reply so the learner sees the tokens arrive; stop reading once the code block closes."""
    stream = client.chat.completions.create(
        model=model, messages=messages, stream=True,
        temperature=temperature, seed=args.seed, max_tokens=args.max_tokens,
    )
    reply = ""
    try:
        with stream:
            for chunk in stream:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    reply += delta
                    print(delta, end="", flush=True)
                    if extract_code(reply):
                        break  # the rest would be chatter; leaving early frees the model server
    except openai.APIError:
        raise
    except Exception as exc:  # the SDK leaves a connection that breaks mid-reply to its HTTP library
        raise ModelUnreachable(f"the connection to the model broke mid-reply: {exc!r}") from exc
    print(flush=True)
    return reply


def run_program(path: Path, timeout: float) -> Run:
    """Run the program in its folder with a timeout; no stdin, output captured."""
    python = shutil.which("python3") or sys.executable
    start = time.monotonic()
    try:
        done = subprocess.run([python, path.name], cwd=path.parent, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return Run(False, None, partial + f"\n(stopped: still running after {timeout:g} s)", timeout)
    # Tracebacks name the file relative to the workspace, so a rerun elsewhere asks the model the same thing.
    output = (done.stdout + done.stderr).replace(f"{path.parent}{os.sep}", "")
    # A program that prints nothing usually defined a function and never called it.
    return Run(done.returncode == 0 and bool(output.strip()), done.returncode, output, time.monotonic() - start)


def feedback(run: Run) -> str:
    """What went wrong, in a few lines: a 135M model has a small context and copies long text."""
    if run.exit_code == 0:
        return "It ran but printed nothing. Call your code and print the result."
    tail = "\n".join(line for line in run.output.strip().splitlines()[-4:] if line.strip())
    if not tail:
        return f"It exited with code {run.exit_code} and printed nothing."
    return f"It failed:\n```\n{tail[-600:]}\n```"


def pick_model(client: openai.OpenAI, base_url: str) -> str:
    """The first model the server lists, like picking the top line of `docker model ls`."""
    models = [m.id for m in client.models.list()]
    if not models:
        raise ModelUnreachable(f"no models at {base_url}/models: pull one on the host "
                               "(docker model pull ai/smollm2:135M-Q4_1)")
    print(f"model: {models[0]} (the first of {len(models)} at {base_url}/models)")
    return models[0]


def explain(exc: openai.APIError, base_url: str) -> str:
    """One line for a failed request; a policy block keeps the proxy's own words."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.response.text.strip().splitlines()
        first = body[0] if body else exc.response.reason_phrase
        if exc.status_code == 403 and first.startswith("Blocked by network policy"):
            port = urlsplit(base_url).port or 12434
            return f"{first} — fix on the host: sbx policy allow network localhost:{port}"
        if exc.status_code == 404:
            return f"the model server answered 404: {first} — check the exact model id with docker model ls"
        return f"the model server answered {exc.status_code}: {first}"
    cause = " ".join(str(exc.__cause__ or exc).split())
    return f"cannot reach the model at {base_url}: {cause}"


def size_of(model: str) -> str:
    """ "135M" from ``ai/smollm2:135M-Q4_1``, for the honest last line."""
    match = re.search(r"(\d+(?:\.\d+)?[MB])\b", model.split(":")[-1], re.IGNORECASE)
    return f"a {match.group(1).upper()}" if match else "a small"


def solve(client: openai.OpenAI, model: str, args: argparse.Namespace, path: Path) -> int:
    """The agent loop: ask, write, run, feed back the error; at most ``max_steps`` model requests.

    Each step is a fresh conversation: the task plus what went wrong last time. Shown its own
    broken program, a 135M model copies it back unchanged (measured), so the error goes back
    without the code.
    """
    problem = ""
    for step in range(1, args.max_steps + 1):
        # At temperature 0 the same question gets the same answer; retries sample a little
        # (still seeded: a rerun gives the same programs).
        temperature = args.temperature if step == 1 else max(args.temperature, args.retry_temperature)
        print(f"\n── step {step}/{args.max_steps}: asking the model (temperature {temperature:g}) ──", flush=True)
        prompt = f"Task: {args.task}"
        if problem:
            prompt += f"\n\nYour previous program did not work. {problem}\nWrite a new program that avoids this."
        start = time.monotonic()
        reply = ask(client, model, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                    temperature, args)
        code = extract_code(reply)
        if code is None:
            print(f"── no complete ```python block in the reply ({time.monotonic() - start:.1f} s)")
            problem = "Your reply had no complete ```python block."
            continue
        path.write_text(code)
        print(f"── wrote {path.name} ({len(code.splitlines())} lines, {time.monotonic() - start:.1f} s); "
              f"running: python3 {path.name}")
        run = run_program(path, args.timeout)
        status = "timed out" if run.exit_code is None else f"exit {run.exit_code}"
        print(f"── {status} in {run.seconds:.2f} s; output:\n{run.output.rstrip() or '(nothing)'}", flush=True)
        if run.ok:
            shown = os.path.relpath(path) if path.is_relative_to(Path.cwd()) else path
            print(f"\nresult: step {step} of {args.max_steps}: {shown} ran (exit 0).")
            print(f"The program ran; {size_of(model)} model's code is often wrong — check the output above.")
            return 0
        problem = feedback(run)
    print(f"\nresult: no step of {args.max_steps} worked: the model's program never ran successfully.")
    return 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m labkit.agent",
                                description="labkit's small coding agent: ask the model for a Python program, "
                                            "run it, feed errors back (OPENAI_BASE_URL, OPENAI_API_KEY).")
    p.add_argument("task", help='what the program should do, e.g. "print the first 10 Fibonacci numbers"')
    p.add_argument("--model", help="model id (default: $OPENAI_MODEL, else the first model the server lists)")
    p.add_argument("--max-steps", type=int, default=3, help="model requests at most (default 3)")
    p.add_argument("--workspace", type=Path, default=Path.cwd(), help="folder to write the program in (default .)")
    p.add_argument("--output", help="file name for the program (default: from the task, e.g. fibonacci.py)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds the program may run (default 5)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0: repeatable)")
    p.add_argument("--retry-temperature", type=float, default=0.7, help="temperature for retries (default 0.7)")
    p.add_argument("--seed", type=int, default=42, help="sampling seed (default 42)")
    p.add_argument("--max-tokens", type=int, default=384, help="longest reply in tokens (default 384)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 the program ran, 1 it never ran successfully, 2 usage, 3 the model could not be reached."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return int(exc.code or 0)
    base_url = os.environ.get("OPENAI_BASE_URL", "").rstrip("/")
    if not base_url:
        print(f"error: OPENAI_BASE_URL is not set: export OPENAI_BASE_URL={EXAMPLE_URL}", file=sys.stderr)
        return 2
    usage = ("OPENAI_BASE_URL must start with http:// or https://" if urlsplit(base_url).scheme not in ("http", "https")
             else "--max-steps must be at least 1" if args.max_steps < 1
             else "TASK is empty" if not args.task.strip()
             else f"--workspace {args.workspace} is not a folder" if not args.workspace.is_dir() else "")
    if usage:
        print(f"error: {usage}", file=sys.stderr)
        return 2
    path = args.workspace.resolve() / Path(args.output or file_name(args.task)).name
    # Local model servers ignore the key, but the SDK insists on one.
    client = openai.OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
                           max_retries=0, timeout=openai.Timeout(120.0, connect=10.0))
    print(f"labkit's agent · task: {args.task}\nmodel server: {base_url}")
    try:
        model, source = (args.model, "--model") if args.model else (os.environ.get("OPENAI_MODEL"), "OPENAI_MODEL")
        if model:
            print(f"model: {model} (from {source})")
        else:
            model = pick_model(client, base_url)
        return solve(client, model, args, path)
    except openai.APIError as exc:
        print(f"\nerror: {explain(exc, base_url)}", file=sys.stderr)
        return 3
    except ModelUnreachable as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
