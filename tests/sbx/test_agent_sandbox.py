"""Agent sandboxes (`sbx create codex|claude PATH`) with the real, pinned agents, in both tiers.

The agents are the npm packages in the project's ``.agents`` prefix (``make lab``); without
them these tests skip and say so. Destructive checks (writing into an install) only ever
target a fake agent prefix made in the test's own folder.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sbx_helpers import run_in, sbx

from labkit.agents import install
from labkit.sbx import guest_agents, runtime, store

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("fresh_policy")]

AGENTS = ("codex", "claude")


def pinned_version(agent: str) -> str:
    """The pinned version (what `AGENT --version` must print); skips when the agent is not installed."""
    if install.executable(agent) is None:
        pytest.skip(f"the {agent} agent is not installed in {install.prefix()}: run make lab")
    return install.pins()[agent].version


@pytest.fixture(params=AGENTS)
def agent(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def agent_box(tier: str, agent: str, workspace: Path) -> Iterator[str]:
    """A fresh sandbox of the agent (real install) in the current tier, created by the CLI; removed afterwards."""
    pinned_version(agent)
    name = f"a-{agent}-{tier[:4]}-{uuid.uuid4().hex[:6]}"
    done = sbx("create", "--name", name, agent, str(workspace))
    assert done.returncode == 0, done.stderr
    assert f"  Agent: {agent}\n" in done.stdout
    yield name
    try:
        runtime.remove(name)
    except store.SandboxError:
        pass


def test_the_agent_runs_inside_and_ls_shows_it(agent_box: str, agent: str) -> None:
    version = pinned_version(agent)
    done = run_in(agent_box, f"{agent} --version")
    assert done.returncode == 0 and version in done.stdout, done.stderr
    rows = [line.split() for line in sbx("ls").stdout.splitlines()]
    assert ["SANDBOX", "AGENT", "STATUS", "PORTS", "WORKSPACE"] == rows[0]
    assert [agent_box, agent, "running"] in [row[:3] for row in rows]
    listed = json.loads(sbx("ls", "--json").stdout)["sandboxes"]
    assert {"name": agent_box, "agent": agent} in [{"name": b["name"], "agent": b["agent"]} for b in listed]


def test_agent_home_persists_and_traffic_goes_through_the_proxy(agent_box: str, agent: str) -> None:
    state = {"codex": ".codex", "claude": ".claude"}[agent]
    assert run_in(agent_box, f'echo kept > "$HOME/{state}/marker"').returncode == 0
    done = run_in(agent_box, f'cat "$HOME/{state}/marker"; echo "codex_home=$CODEX_HOME"; env')
    assert done.stdout.startswith("kept\n")
    assert (store.get(agent_box).home / state / "marker").read_text() == "kept\n"  # in the sandbox's home
    env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    if agent == "codex":
        assert env["CODEX_HOME"] == f"{env['HOME']}/.codex"
    assert env["HTTP_PROXY"] == env["HTTPS_PROXY"] == env["http_proxy"] != ""
    assert env["NO_PROXY"] == "localhost,127.0.0.1,::1"


@pytest.mark.namespaces
def test_the_installed_agent_is_read_only_inside(agent_box: str, agent: str) -> None:
    """Non-destructive: only asks whether writing would work (the install is the real one)."""
    found = guest_agents.find(agent)
    assert found is not None
    other = "claude" if agent == "codex" else "codex"
    probe = Path(found.prefix) / f".probe-{uuid.uuid4().hex[:6]}"
    try:
        done = run_in(agent_box, f'command -v {agent}; readlink -f "$(command -v {agent})"; '
                                 f'command -v {other} || echo "no {other}"; '
                                 f'for f in "{found.executable}" "{found.prefix}" {guest_agents.LINKS_IN_GUEST}; '
                                 f'do test -w "$f" && echo "WRITABLE $f"; done; touch "{probe}" 2>&1')
    finally:
        probe.unlink(missing_ok=True)
    assert done.stdout.startswith(f"{guest_agents.LINKS_IN_GUEST}/{agent}\n{found.executable}\n"), done.stdout
    assert "WRITABLE" not in done.stdout and "Read-only file system" in done.stdout
    assert f"\nno {other}\n" in done.stdout  # only the sandbox's own agent is on PATH


def fake_prefix(root: Path) -> tuple[Path, Path]:
    """An agents prefix laid out like npm's, with a shell-script `codex`: (prefix, that script)."""
    prefix = root / ".agents"
    exe = prefix / "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\necho fake-codex 1.0\n")
    exe.chmod(0o755)
    return prefix, exe


@pytest.mark.namespaces
@pytest.mark.parametrize("kind", ["codex", "shell"])
def test_an_agents_prefix_inside_the_workspace_stays_read_only(
        tier: str, kind: str, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sbx create codex .` in the repo: the workspace is writable, the agents inside it are not."""
    prefix, exe = fake_prefix(workspace)
    monkeypatch.setenv(guest_agents.PREFIX_ENV, str(prefix))
    name = f"a-ro-{kind}-{uuid.uuid4().hex[:6]}"
    runtime.create(kind, str(workspace), name)
    try:
        done = run_in(name, f'echo owned > "{exe}"; touch "{prefix}/new"; echo ok > "{workspace}/mine.txt"; '
                            f'{"codex" if kind == "codex" else exe}')
    finally:
        runtime.remove(name)
    assert done.stderr.count("Read-only file system") == 2 and done.stdout == "fake-codex 1.0\n", done.stderr
    assert exe.read_text().endswith("echo fake-codex 1.0\n") and not (prefix / "new").exists()
    assert (workspace / "mine.txt").read_text() == "ok\n"


def test_a_missing_agent_is_one_clear_error_and_nothing_is_created(
        tier: str, agent: str, workspace: Path, tmp_path: Path) -> None:
    name = f"a-miss-{uuid.uuid4().hex[:6]}"
    done = sbx("create", "--name", name, agent, str(workspace), env={guest_agents.PREFIX_ENV: str(tmp_path / "none")})
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"ERROR: the {agent} agent is not installed: run make lab\n"
    assert name not in sbx("ls", "-q").stdout.split()
    assert not (store.sandboxes_dir() / name).exists()


def run_on_a_terminal(argv: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as stdin/stdout/stderr (like a learner's shell); (status, output)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, start_new_session=True)
    os.close(follower)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            out += chunk
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), out.decode(errors="replace")
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()


def test_run_starts_the_agent_on_a_terminal_and_exec_runs_the_command(agent_box: str, agent: str) -> None:
    code, out = run_on_a_terminal([sys.executable, "-m", "labkit.sbx.cli", "run", agent_box, "--", "--version"])
    assert code == 0 and pinned_version(agent) in out, out
    assert sbx("exec", agent_box, "echo", "a command, not the agent").stdout == "a command, not the agent\n"
