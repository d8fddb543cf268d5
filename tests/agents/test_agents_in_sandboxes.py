"""Real Codex and Claude Code inside real embedded sandboxes, through the real policy proxy, against
labkit's real model server whose engine process is scripted (tests/agents/scripted_engine.py).

The 135M model cannot drive an agent through a tool call, so the engine is replaced by a script
that can: the first answer is one call to the agent's shell tool (write fib.py, run it with
python3), the answer after the tool result a short final message. Everything else is the
course's: the agents are the pinned installs, configured only by labkit's generators
(``labkit.agents.codex``/``claude``), the sandbox is ``sbx create … codex|claude WORKSPACE``, the
proxy audits every request, the front translates Responses (DMR ``current``/``1.2.6``) and
Anthropic Messages as for the real model. The last test uses the real model for one bounded turn.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from labkit.agents import claude, codex
from labkit.dmr import server as dmr_server
from labkit.dmr.store import Store
from labkit.dmr.supervisor import Engine
from labkit.sbx import audit, isolation, rules, runtime, store
from labkit.sbx import service as proxy_service
from tests.support import wait_for

from .conftest import REF, request_log
from .scripted_engine import FIB

pytestmark = [pytest.mark.agents, pytest.mark.timeout(180)]

ENGINE = Path(__file__).with_name("scripted_engine.py")
TASK = "Write fib.py that prints the first 10 Fibonacci numbers, one per line, and run it with python3."
DONE = "Done: fib.py prints " + " ".join(map(str, FIB))
RUN_TIMEOUT = 120  # one agent run (two scripted turns take seconds)
SEED_BOUND = 45  # the seed's setup never ends ("Reconnecting... waiting for network"): killed after §7b's window
INCLUDE_400 = "include is not supported by Docker Model Runner Responses compatibility layer"
SEED_HOSTS = ("api.openai.com:443", "chatgpt.com:443", "auth.openai.com:443", "github.com:443", "api.github.com:443")


# ---- fixtures: proxy, model store, scripted server, sandbox ----------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The policy proxy running (as `labkit up` starts it) and the shipped model, in this module's own
    state folder (the session's store, which other suites count on, stays as it is)."""
    tier = isolation.detect()
    if tier.name != "namespaced":
        pytest.skip(f"namespaces are not available here ({tier.reason}): the agents need a real embedded sandbox")
    home = Path(tempfile.mkdtemp(prefix="lkag-", dir="/tmp"))  # short: sandbox sockets live under it
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LABKIT_HOME", str(home))
        proxy_service.start()
        models = Store()
        models.pull(REF)
        try:
            yield models
        finally:
            proxy_service.stop()
            shutil.rmtree(home, ignore_errors=True)


@dataclass
class Server:
    base_url: str  # as the host reaches it
    port: int

    def sandbox_url(self, path: str = "") -> str:
        return f"http://host.docker.internal:{self.port}{path}"


@contextlib.contextmanager
def scripted_server(models: Store, compat: str) -> Iterator[Server]:
    """labkit's model server (``create_app``) in this process on a free port, its engine the scripted one."""
    saved = os.environ.get("LABKIT_DMR_COMPAT")
    os.environ["LABKIT_DMR_COMPAT"] = compat  # read when the routes are built, i.e. in create_app
    try:
        app = dmr_server.create_app(store=models, engine=Engine(threads=1, argv=[sys.executable, str(ENGINE)]),
                                    preload=False)
    finally:
        if saved is None:
            os.environ.pop("LABKIT_DMR_COMPAT", None)
        else:
            os.environ["LABKIT_DMR_COMPAT"] = saved
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="scripted-dmr", daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), 20, "the scripted model server to start")
    assert server.started, "the scripted model server did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Server(f"http://127.0.0.1:{port}", port)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def policy() -> Iterator[None]:
    rules.reset()  # the initial balanced policy
    yield
    rules.reset()


@contextlib.contextmanager
def agent_sandbox(agent: str, workspace: Path) -> Iterator[str]:
    """``sbx create --name N AGENT WORKSPACE`` through the CLI, as a learner runs it; removed afterwards."""
    name = f"t-{agent}-{uuid.uuid4().hex[:6]}"
    done = subprocess.run([sys.executable, "-m", "labkit.sbx.cli", "create", "--name", name, agent, str(workspace)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    try:
        yield name
    finally:
        with contextlib.suppress(store.SandboxError):
            runtime.remove(name)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float
    killed: bool = False


def run_agent(sandbox: str, argv: list[str], env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT,
              stop_when=None) -> Run:
    """``argv`` in the sandbox, stdin closed; killed (its whole process group) after ``timeout`` seconds
    or as soon as ``stop_when()`` holds."""
    t0 = time.monotonic()
    proc = runtime.popen(sandbox, argv, env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    out: dict[str, str] = {}
    readers = [threading.Thread(target=lambda k=k, s=s: out.__setitem__(k, s.read()), daemon=True)
               for k, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for reader in readers:
        reader.start()
    killed = False
    try:
        deadline = t0 + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline or (stop_when is not None and stop_when()):
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        for reader in readers:
            reader.join(timeout=10)
    return Run(proc.returncode, out.get("stdout", ""), out.get("stderr", ""), time.monotonic() - t0, killed)


def run_codex(sandbox: str, settings: codex.Settings, **kwargs) -> Run:
    """Codex configured only by the generator: its files in the sandbox's $CODEX_HOME, its argv."""
    home = store.get(sandbox).home / ".codex"
    for name, text in codex.files(settings, codex_home=f"{runtime.GUEST_HOME}/.codex").items():
        (home / name).write_text(text)
    return run_agent(sandbox, codex.argv(TASK, settings), **kwargs)


def run_claude(sandbox: str, settings: claude.Settings) -> Run:
    return run_agent(sandbox, claude.argv(TASK, settings), claude.env(settings))


def model_records(sandbox: str, port: int) -> tuple[list[audit.AuditRecord], list[audit.AuditRecord]]:
    """The sandbox's audit records: (to the model port, everything else); both printed."""
    records = audit.read(sandbox=sandbox)
    seen = Counter((r.decision, r.method, r.url.split("?")[0], r.status, r.rule.get("text") or r.rule.get("id", ""))
                   for r in records)
    for (decision, method, url, status, rule), count in seen.items():
        print(f"  audit {sandbox}: {count:2} × {decision:5} {method} {url} → {status} ({rule})")
    ours = [r for r in records if r.normalized == f"localhost:{port}"]
    return ours, [r for r in records if r not in ours]


def server_log(server: Server) -> list[dict]:
    records = request_log(server.base_url)
    for rec in records:
        print(f"request log: {rec['method']} {rec['url']} → {rec['status_code']}")
    return records


def check_fib(workspace: Path) -> None:
    """fib.py was written into the workspace by the agent's tool call and prints the ten numbers."""
    assert (workspace / "fib.py").is_file(), "the agent did not write fib.py into the workspace"
    done = subprocess.run(["python3", "fib.py"], cwd=workspace, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert [int(n) for n in done.stdout.replace(",", " ").split()] == FIB


def report(agent: str, compat: str, run: Run, records: list[dict]) -> None:
    print(f"{agent} ({compat}): exit {run.code} after {run.seconds:.1f} s{' (killed)' if run.killed else ''}; "
          f"stdout {run.stdout.strip()[-300:]!r}; stderr tail {run.stderr.strip()[-500:]!r}")
    for rec in records:
        blocks = history_blocks(rec, "tool_use") + history_blocks(rec, "tool_result")
        items = [i for i in answer(rec, "request").get("input") or [] if isinstance(i, dict)]
        sent = [b["type"] + (f":{b['name']}" if b.get("name") else "") for b in blocks]
        sent += [i["type"] + (f":{i['name']}" if i.get("name") else "") for i in items
                 if str(i.get("type", "")).startswith("function_call")]
        print(f"  {rec['method']} {rec['url']} → {rec['status_code']}; history sent: {sent}; "
              f"answer's tool calls: {tool_calls(rec)} ({answer(rec).get('stop_reason') or answer(rec).get('status')})")


def answer(record: dict, key: str = "response") -> dict:
    """A request log record's response (or ``request``); the log keeps them as JSON text."""
    value = record.get(key)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    return value if isinstance(value, dict) else {}


def tool_calls(record: dict) -> list[str]:
    """The tools a logged answer called: Responses ``function_call`` items; for Messages, whose streamed
    answer DMR's log re-assembles from its text deltas only, the ``tool_use`` blocks the next request
    sends back as history (``?`` when the answer stopped for a tool use no later request shows)."""
    response = answer(record)
    if record["url"].endswith("/responses"):
        return [i.get("name", "") for i in response.get("output") or [] if i.get("type") == "function_call"]
    return ["?"] if response.get("stop_reason") == "tool_use" else []


def history_blocks(record: dict, kind: str) -> list[dict]:
    """The content blocks of type ``kind`` in a logged Messages request."""
    return [b for m in answer(record, "request").get("messages") or [] if isinstance(m.get("content"), list)
            for b in m["content"] if isinstance(b, dict) and b.get("type") == kind]


# ---- the agents finish a tool round trip -----------------------------------------------------------------

@pytest.mark.parametrize("compat", ["current", "1.2.6"])
def test_claude_code_writes_and_runs_fib_in_the_sandbox(lab: Store, policy: None, tmp_path: Path, compat: str):
    with scripted_server(lab, compat) as server, agent_sandbox("claude", tmp_path) as box:
        rules.add("allow", f"localhost:{server.port}")
        run = run_claude(box, claude.Settings(model=REF, base_url=server.sandbox_url()))
        records = server_log(server)
        report("claude", compat, run, records)
        ours, others = model_records(box, server.port)
    assert run.code == 0, run.stderr[-2000:]
    assert DONE in run.stdout  # the final answer quotes the tool's real output: it went back to the model
    check_fib(tmp_path)
    messages = [r for r in records if r["url"] == "/engines/v1/messages"]
    assert len(messages) >= 2 and all(r["status_code"] == 200 for r in messages), records
    assert [answer(r).get("stop_reason") for r in messages] == ["tool_use", "end_turn"]
    assert [b["name"] for b in history_blocks(messages[1], "tool_use")] == ["Bash"]
    assert "fib.py" in history_blocks(messages[1], "tool_use")[0]["input"]["command"]
    assert "21\n34" in json.dumps(history_blocks(messages[1], "tool_result")).replace("\\n", "\n")
    assert ours and all(r.decision == "allow" and r.url.split("?")[0].endswith("/v1/messages") for r in ours)
    assert len(ours) == len(messages)
    assert others == [], "the generated environment leaves no other destination"


def test_codex_writes_and_runs_fib_against_dmr_1_2_6(lab: Store, policy: None, tmp_path: Path):
    with scripted_server(lab, "1.2.6") as server, agent_sandbox("codex", tmp_path) as box:
        rules.add("allow", f"localhost:{server.port}")
        run = run_codex(box, codex.Settings(model=REF, base_url=server.sandbox_url("/v1")))
        records = server_log(server)
        report("codex", "1.2.6", run, records)
        ours, others = model_records(box, server.port)
    assert run.code == 0, run.stderr[-2000:]
    assert DONE in run.stdout
    check_fib(tmp_path)
    posts = [r for r in records if r["url"].endswith("/responses")]
    assert len(posts) == 2 and all(r["status_code"] == 200 for r in posts), records
    assert [tool_calls(r) for r in posts] == [["exec_command"], []]
    assert [r.method for r in ours] == ["POST", "POST"] and all(r.decision == "allow" for r in ours)
    assert all(r.url.endswith("/v1/responses") for r in ours)
    assert others == [], "with the generated profile nothing else leaves the sandbox (reference §7b)"


# ---- the failures the course explains ----------------------------------------------------------------------

def test_codex_against_current_dmr_gets_the_include_400(lab: Store, policy: None, tmp_path: Path):
    with scripted_server(lab, "current") as server, agent_sandbox("codex", tmp_path) as box:
        rules.add("allow", f"localhost:{server.port}")
        run = run_codex(box, codex.Settings(model=REF, base_url=server.sandbox_url("/v1")))
        records = server_log(server)
        report("codex", "current", run, records)
        ours, others = model_records(box, server.port)
    assert run.code != 0 and not run.killed
    assert INCLUDE_400 in run.stderr
    assert records and {(r["url"], r["status_code"]) for r in records} == {("/engines/v1/responses", 400)}
    assert INCLUDE_400 in str(records[0].get("response") or records[0].get("error") or records[0])
    assert ours and all(r.decision == "allow" and r.status == 400 for r in ours) and others == []
    assert not (tmp_path / "fib.py").exists()


def test_codex_with_the_live_mode_path_gets_404_from_dmr_1_2_6(lab: Store, policy: None, tmp_path: Path):
    """The generated config with live mode's ``/engines/v1``: DMR 1.2.6 serves Responses only at /v1."""
    with scripted_server(lab, "1.2.6") as server, agent_sandbox("codex", tmp_path) as box:
        rules.add("allow", f"localhost:{server.port}")
        run = run_codex(box, codex.Settings(model=REF, base_url=server.sandbox_url("/engines/v1")))
        records = server_log(server)
        report("codex", "1.2.6 at /engines/v1", run, records)
        ours, others = model_records(box, server.port)
    assert run.code != 0 and not run.killed
    assert "404" in run.stderr, run.stderr[-2000:]
    assert ours and all(r.url.endswith("/engines/v1/responses") and r.status == 404 for r in ours)
    assert others == [] and records == []  # nothing reached the engine
    assert not (tmp_path / "fib.py").exists()


def test_the_seeds_openai_base_url_never_reaches_the_model(lab: Store, policy: None, tmp_path: Path):
    """``OPENAI_BASE_URL`` + ``OPENAI_API_KEY`` and no config: Codex goes to OpenAI; deny rules stop it."""
    with scripted_server(lab, "1.2.6") as server, agent_sandbox("codex", tmp_path) as box:
        rules.add("allow", f"localhost:{server.port}")
        balanced = {host: rules.check(host, box).decision for host in SEED_HOSTS}
        print(f"under balanced these would be: {balanced}")
        rules.add("deny", ",".join(SEED_HOSTS))

        env = {"OPENAI_BASE_URL": server.sandbox_url("/v1"), "OPENAI_API_KEY": "x"}
        run = run_agent(box, ["codex", "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                              TASK], env, timeout=SEED_BOUND)
        records = server_log(server)
        report("codex", "seed OPENAI_BASE_URL", run, records)
        ours, others = model_records(box, server.port)
    assert balanced["api.openai.com:443"] == "allow", "the balanced preset allows OpenAI (reference §7b)"
    assert ours == [] and records == [], "the model port was never called"
    openai = [r for r in others if r.normalized == "api.openai.com:443"]
    assert openai and all(r.method == "CONNECT" and r.decision == "deny" for r in openai)
    assert all(r.decision == "deny" for r in others), [(r.normalized, r.decision) for r in others]
    assert not (tmp_path / "fib.py").exists()


# ---- the real model, wiring only --------------------------------------------------------------------------

def test_codex_reaches_the_real_embedded_model_in_1_2_6(lab: Store, policy: None, tmp_path: Path):
    """One bounded turn of real Codex against the real SmolLM2 (``labkit.dmr.service``): wiring only."""
    from .conftest import dmr_server as real_server

    with real_server("1.2.6") as base, agent_sandbox("codex", tmp_path) as box:
        port = int(base.rsplit(":", 1)[1])
        rules.add("allow", f"localhost:{port}")
        # the log holds a request from its start (status 0) and gets its status once the answer began
        seen = lambda: any(r["url"].endswith("/responses") and r["status_code"] for r in request_log(base))  # noqa: E731
        run = run_codex(box, codex.Settings(model=REF, base_url=f"http://host.docker.internal:{port}/v1"),
                        timeout=120, stop_when=seen)
        records = request_log(base)
        report("codex", "1.2.6, real model", run, records)
        ours, others = model_records(box, port)
    posts = [r for r in records if r["url"].endswith("/responses")]
    assert posts and posts[0]["method"] == "POST" and posts[0]["status_code"] == 200, records
    assert ours and ours[0].decision == "allow" and ours[0].url.endswith("/v1/responses")
    assert others == []
