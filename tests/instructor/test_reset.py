"""`labkit reset`: real sandboxes, rules and audit records made with the real CLIs, then reset.

Each test gets its own short LABKIT_HOME (Unix socket paths have a length limit) and model
port, builds the state a class leaves behind with `labkit up`, `labkit model pull`, `labkit
sbx create/exec/policy`, runs `labkit reset`, and checks the state through the same CLIs.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support import free_port, wait_for

MODEL = "ai/smollm2:135M-Q4_1"


class Cli:
    """`labkit …` in a private state folder, as a learner's terminal runs it."""

    def __init__(self, home: Path, isolation: str | None) -> None:
        self.home = home
        self.port = free_port()
        self.env = {**os.environ, "LABKIT_HOME": str(home), "LABKIT_DMR_PORT": str(self.port),
                    "LABKIT_MODE": "embedded"}
        self.env.pop("LABKIT_ISOLATION", None)
        if isolation:
            self.env["LABKIT_ISOLATION"] = isolation

    def run(self, *args: str, ok: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "labkit", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if ok:
            assert done.returncode == 0, f"labkit {' '.join(args)} → {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args).stdout)

    def audit(self) -> list[dict]:
        return [json.loads(line) for line in self.run("audit", "--json").stdout.splitlines() if line.strip()]

    def wait_for_records(self, count: int) -> None:
        """The proxy appends a request's record as the request ends: poll the log for it."""
        log = self.home / "sbx" / "audit.jsonl"
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= count, 15,
                 f"the audit log to reach {count} records")

    def archives(self) -> list[Path]:
        folder = self.home / "archive"
        return sorted(folder.glob("audit-*.jsonl")) if folder.is_dir() else []


@pytest.fixture
def cli(request: pytest.FixtureRequest) -> Iterator[Cli]:
    home = Path(tempfile.mkdtemp(prefix="lkrs-", dir="/tmp"))
    lab = Cli(home, getattr(request, "param", None))
    try:
        yield lab
    finally:
        lab.run("down", ok=False)
        shutil.rmtree(home, ignore_errors=True)


def _sleepers(token: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] == ["sleep", token]:
            found.append(proc)
    return found


def _class_leftovers(cli: Cli, workspace: Path) -> str:
    """What a class leaves behind: two sandboxes (one busy), local rules, another preset, records."""
    cli.run("up")
    cli.run("model", "pull", MODEL, timeout=180)
    cli.run("sbx", "create", "--name", "dmr-test", "shell", str(workspace))
    cli.run("sbx", "create", "--name", "dmr-agent", "shell", str(workspace))
    cli.run("sbx", "policy", "allow", "network", f"localhost:{cli.port}")
    cli.run("sbx", "policy", "deny", "network", "--sandbox", "dmr-agent", "example.com")
    url = f"http://host.docker.internal:{cli.port}/engines/llama.cpp/v1/models"
    code = cli.run("sbx", "exec", "dmr-test", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url)
    assert code.stdout == "200"
    code = cli.run("sbx", "exec", "dmr-agent", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                   "http://example.com/")
    assert code.stdout == "403"
    cli.run("sbx", "policy", "init", "deny-all")
    token = f"{random.randint(3000, 9999)}.{random.randint(100, 999)}"
    cli.run("sbx", "exec", "-d", "dmr-agent", "sleep", token)
    wait_for(lambda: _sleepers(token), 15, "the detached command to start")
    (cli.home / "sbx" / "sandboxes" / "dmr-test" / "home" / "notes.txt").write_text("learner's scratch\n")
    return token


@pytest.mark.timeout(240)
@pytest.mark.parametrize("cli", [None, "process"], indirect=True, ids=["auto-tier", "process-tier"])
def test_reset_returns_the_lab_to_the_start_and_keeps_models(cli: Cli):
    workspace = cli.home / "ws"
    workspace.mkdir()
    (workspace / "test_local.py").write_text("print('mine')\n")
    token = _class_leftovers(cli, workspace)
    cli.wait_for_records(2)
    records_before = cli.audit()
    assert [r["decision"] for r in records_before] == ["allow", "deny"]

    done = cli.run("reset")
    lines = done.stdout.splitlines()
    assert lines[:2] == [
        f"sandbox dmr-agent: removed, with its home and rules (workspace {workspace} kept)",
        f"sandbox dmr-test: removed, with its home and rules (workspace {workspace} kept)",
    ]
    assert lines[2] == "policy: preset deny-all → balanced, 2 local rules dropped"
    assert lines[3].startswith("audit log: 2 records archived to ")
    assert lines[4] == "models: kept (docker.io/ai/smollm2:135M-Q4_1)"

    # sandboxes: gone, with their homes and their running commands
    assert cli.json("sbx", "ls", "--json") == {"sandboxes": []}
    assert not (cli.home / "sbx" / "sandboxes" / "dmr-test").exists()
    wait_for(lambda: not _sleepers(token), 15, "the command running in a removed sandbox to end with the reset")
    # policy: the balanced preset's rules only
    rules = cli.json("sbx", "policy", "ls", "--json")["rules"]
    assert rules and {r["origin"] for r in rules} == {"preset"} and {r["policy_id"] for r in rules} == {"balanced"}
    # audit: empty now, every record in the archive, byte for byte what `labkit audit` showed
    assert cli.audit() == []
    (archive,) = cli.archives()
    assert lines[3] == f"audit log: 2 records archived to {archive}"
    assert [json.loads(line) for line in archive.read_text().splitlines()] == records_before
    # kept: the model, the learner's workspace
    assert "smollm2" in cli.run("model", "ls").stdout
    assert (workspace / "test_local.py").read_text() == "print('mine')\n"

    # the running proxy starts a fresh log: the next class's first request is its only record
    cli.run("sbx", "create", "--name", "dmr-test", "shell", str(workspace))
    cli.run("sbx", "policy", "allow", "network", f"localhost:{cli.port}")
    url = f"http://host.docker.internal:{cli.port}/engines/llama.cpp/v1/models"
    assert cli.run("sbx", "exec", "dmr-test", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                   url).stdout == "200"
    cli.wait_for_records(1)
    assert [r["decision"] for r in cli.audit()] == ["allow"]
    assert len(archive.read_text().splitlines()) == 2


@pytest.mark.timeout(120)
def test_reset_twice_and_on_a_fresh_home_is_harmless(cli: Cli):
    expected = ["sandboxes: none to remove", "policy: already the balanced preset with no local rules",
                "audit log: empty, nothing to archive"]
    first = cli.run("reset", "--yes").stdout.splitlines()
    assert first[:3] == expected
    assert first[3] == "models: none pulled (nothing to keep)"

    workspace = cli.home / "ws"
    workspace.mkdir()
    cli.run("sbx", "create", "--name", "dmr-test", "shell", str(workspace))
    cli.run("sbx", "policy", "allow", "network", "localhost:1")
    cli.run("sbx", "exec", "dmr-test", "curl", "-s", "-o", "/dev/null", "http://example.com/", ok=False)
    cli.wait_for_records(1)
    second = cli.run("reset").stdout.splitlines()
    assert second[0].startswith("sandbox dmr-test: removed")
    assert second[1] == "policy: the balanced preset, 1 local rule dropped"
    assert second[2].startswith("audit log: 1 record archived to ")
    third = cli.run("reset").stdout.splitlines()
    assert third[:3] == expected
    assert len(cli.archives()) == 1


@pytest.mark.timeout(60)
def test_a_damaged_sandbox_record_and_a_damaged_policy_do_not_stop_the_reset(cli: Cli):
    workspace = cli.home / "ws"
    workspace.mkdir()
    cli.run("sbx", "create", "--name", "broken", "shell", str(workspace))
    (cli.home / "sbx" / "sandboxes" / "broken" / "sandbox.json").write_text("{not json")
    (cli.home / "sbx" / "policy.json").write_text("{not json")
    assert cli.run("sbx", "policy", "ls", ok=False).returncode != 0  # the store really is unreadable
    lines = cli.run("reset").stdout.splitlines()
    assert lines[0] == "sandbox broken: its damaged record was deleted"
    assert lines[1] == "policy: the unreadable policy store was deleted; the preset is balanced again"
    assert not (cli.home / "sbx" / "sandboxes" / "broken").exists()
    assert cli.run("sbx", "policy", "ls").returncode == 0


def test_archive_names_never_overwrite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from labkit.commands import reset

    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    now = time.time()
    first = reset.archive_path(now)
    first.write_text("x\n")
    second = reset.archive_path(now)
    second.write_text("y\n")
    assert first != second and second.name.endswith("-2.jsonl") and first.read_text() == "x\n"


def test_labkit_lists_reset():
    out = subprocess.run([sys.executable, "-m", "labkit", "--help"], capture_output=True, text=True, timeout=30)
    assert any(line.split()[:1] == ["reset"] for line in out.stdout.splitlines())
