"""Real Codex and Claude Code with the generated configuration, on the host (no sandbox needed).

First against the recording stub (tests/agents/stub.py, a measurement tool: it shows exactly
what each agent sends and where else it tries to go), then against labkit's embedded model
server in both DMR behaviours. The 135M model cannot drive an agent well, so these check the
wiring only: the request reached the server, and what the server said.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from labkit.agents import claude, codex, install

from . import stub
from .conftest import REF, dmr_server, request_log

pytestmark = [pytest.mark.agents, pytest.mark.timeout(180)]
RUN_TIMEOUT = 120


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_", "CODEX_", "OPENAI_"))}
    return subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL,
                          env={**clean, **env}, cwd=cwd)


def proxied(port: int) -> dict[str, str]:
    """The stub as HTTP(S) proxy for every host but the model's, so other destinations are recorded."""
    url = f"http://127.0.0.1:{port}"
    return {"HTTPS_PROXY": url, "HTTP_PROXY": url, "NO_PROXY": "127.0.0.1,localhost"}


def run_codex(settings: codex.Settings, home: Path, extra: dict[str, str] | None = None):
    codex.write(home / ".codex", settings)
    env = {"HOME": str(home), "CODEX_HOME": str(home / ".codex"), **(extra or {})}
    return run(codex.argv("Say hi", settings, str(install.require("codex"))), env, home)


def run_claude(settings: claude.Settings, home: Path, extra: dict[str, str] | None = None):
    env = {"HOME": str(home), **claude.env(settings), **(extra or {})}
    return run(claude.argv("Say hi", settings, str(install.require("claude"))), env, home)


def test_codex_sends_one_slim_request_still_with_include(agent_home: Path):
    rec = stub.Recorder()
    server = stub.serve(rec)
    try:
        proc = run_codex(codex.Settings(base_url=f"http://127.0.0.1:{server.server_port}/v1"), agent_home,
                         proxied(server.server_port))
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == stub.ANSWER
    assert [(r.method, r.path) for r in rec.requests] == [("POST", "/v1/responses")], "nothing else, no CONNECT"
    body = rec.requests[0].body
    assert [t["type"] for t in body["tools"]] == ["function", "function"]
    assert [t["name"] for t in body["tools"]] == ["exec_command", "write_stdin"]
    assert body["input"][0]["content"][0]["text"] == codex.INSTRUCTIONS.strip()
    # the fact the course states: no 0.171 setting stops this, and DMR's newer code refuses it
    assert body["include"] == ["reasoning.encrypted_content"]


def test_claude_code_sends_one_messages_request_and_nothing_else(agent_home: Path):
    rec = stub.Recorder()
    server = stub.serve(rec)
    try:
        proc = run_claude(claude.Settings(model=REF, base_url=f"http://127.0.0.1:{server.server_port}"), agent_home,
                          proxied(server.server_port))
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stdout[-500:] + proc.stderr[-1500:]
    assert proc.stdout.strip() == stub.ANSWER
    assert [(r.method, r.path) for r in rec.requests] == [("POST", "/v1/messages?beta=true")]
    body = rec.requests[0].body
    assert body["model"] == REF and body["stream"] is True and body["max_tokens"] == 1024


def test_codex_against_current_dmr_is_refused_for_include(agent_home: Path):
    with dmr_server("current") as base:
        proc = run_codex(codex.Settings(model=REF, base_url=base + "/v1"), agent_home)
        records = request_log(base)
    assert proc.returncode != 0
    assert "include is not supported by Docker Model Runner Responses compatibility layer" in proc.stderr
    assert [(r["url"], r["status_code"]) for r in records] == [("/engines/v1/responses", 400)], records


def test_codex_against_dmr_1_2_6_is_accepted(agent_home: Path):
    with dmr_server("1.2.6") as base:
        proc = run_codex(codex.Settings(model=REF, base_url=base + "/v1"), agent_home)
        records = request_log(base)
    assert "not supported by Docker Model Runner" not in proc.stderr
    assert records and records[0]["url"].endswith("/responses"), records
    assert records[0]["model"] == REF and records[0]["status_code"] == 200
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_claude_code_against_the_embedded_server_finishes(agent_home: Path):
    with dmr_server("current") as base:
        # bounded answers: on a loaded 2-core machine the 135M model writes ~20 tokens/s
        settings = claude.Settings(model=REF, base_url=base, max_turns=2, max_output_tokens=256)
        try:
            proc = run_claude(settings, agent_home)
        except subprocess.TimeoutExpired:
            # Seen twice, only as the first Claude Code run on the host in a fresh clone's full suite (12 s
            # otherwise; cause not found): one more run, which must finish like any other.
            print("claude -p timed out once; running it again")
            proc = run_claude(settings, agent_home)
        records = request_log(base)
    assert records and {r["url"] for r in records} == {"/engines/v1/messages"}, records  # (its ?beta=true dropped)
    assert all(r["status_code"] == 200 for r in records), records
    # It finishes: with the model's answer (exit 0), or, when the small model rambles past the limit, with
    # Claude Code's own verdict on that answer (exit 1, naming CLAUDE_CODE_MAX_OUTPUT_TOKENS) — either way it
    # got a complete, well-formed streamed answer from the server.
    finished = proc.returncode == 0 or (proc.returncode == 1 and "CLAUDE_CODE_MAX_OUTPUT_TOKENS" in proc.stdout)
    assert finished and proc.stdout.strip(), (proc.returncode, proc.stdout[-1000:], proc.stderr[-1000:])
