"""Contract: every fake sbx version, whatever its output format, gives the adapters the same records."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from labkit.errors import ToolError
from labkit.records import PolicyLogEntry, SandboxInfo
from labkit.tools import sbx_output
from labkit.tools.sbx_cli import SbxCli

pytestmark = [pytest.mark.timeout(60), pytest.mark.fast]

# Behaviour whose syntax and output do not change between the middle versions runs on the oldest and newest.
EDGES = pytest.mark.parametrize("version", ["0.23.0", "0.42.1"], indirect=True)

# The fake's sample of the `balanced` preset (tests/fakes/bin/sbx, PRESET_RULES).
BALANCED = [
    ("default-ai-services", ("api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com")),
    ("default-package-managers", ("pypi.org", "files.pythonhosted.org", "registry.npmjs.org")),
    ("default-code-and-containers", ("github.com", "**.githubusercontent.com:443", "registry-1.docker.io")),
    ("default-cloud-infrastructure", ("**.amazonaws.com:443", "**.googleapis.com:443")),
    ("default-cert-validation", ("ocsp.digicert.com",)),
    ("default-os-packages", ("ports.ubuntu.com", "archive.ubuntu.com")),
]


def policy(sbx: SbxCli, verb: str, *args: str, sandbox: str | None = None) -> str | None:
    """`sbx policy VERB network [scope] ARGS` as a notebook types it (``Lab.Policy``), in this version's
    scope syntax; the new rule's id when sbx prints it."""
    return sbx_output.parse_added_id(sbx.run(["policy", verb, "network", *sbx.scope_args(sandbox), *args]).text)


def scenario(sbx: SbxCli, workspace: Path) -> dict:
    """The course's steps 2–3 plus a scoped deny: what a notebook does, through the adapters."""
    sbx.policy_init("balanced")
    sbx.create("dmr-test", "shell", str(workspace))
    sbx.create("other", "shell", str(workspace))
    allow_id = policy(sbx, "allow", "localhost:12434")
    deny_id = policy(sbx, "deny", "evil.example.com,*.tracker.example", sandbox="other")
    sbx.stop("other")
    return {"ls": sbx.ls(), "rules": sbx.policy_rules(), "allow_id": allow_id, "deny_id": deny_id}


def expected_rules(version: str, allow_id: str, deny_id: str) -> list[tuple]:
    presets = [(name, name, "allow", resources, "all", "preset") for name, resources in BALANCED]
    # v0.23's table shows no scope at all: a sandbox rule reads as global there (reference §1.5).
    deny_scope = "all" if version == "0.23.0" else "other"
    return presets + [
        (allow_id, f"local:{allow_id}", "allow", ("localhost:12434",), "all", "local"),
        (deny_id, f"local:{deny_id}", "deny", ("evil.example.com", "*.tracker.example"), deny_scope, "local"),
    ]


def test_every_version_gives_the_same_records(tmp_path: Path, fake_env: Path, monkeypatch: pytest.MonkeyPatch,
                                              workspace: Path, sbx_versions: list[str]) -> None:
    """One scenario, all versions and their output formats: the same sandboxes and rules.

    Rule ids are random per run, and a table shows no id for a preset rule (its name stands in),
    so ids are compared per run and left out across runs.
    """
    ws = (str(workspace.resolve()),)
    results = {}
    for v in sbx_versions:
        monkeypatch.setenv("FAKE_SBX_VERSION", v)
        monkeypatch.setenv("FAKE_STATE_DIR", str(tmp_path / f"state-{v}"))
        sbx = SbxCli(["sbx"])
        got = scenario(sbx, workspace)
        assert got["ls"] == [SandboxInfo("dmr-test", "shell", "running", ws),
                             SandboxInfo("other", "shell", "stopped", ws)], v
        rules = [(r.id, r.name, r.decision, r.resources, r.applies_to, r.origin) for r in got["rules"]]
        expected = expected_rules(v, got["allow_id"], got["deny_id"])
        assert [rule[1:] for rule in rules] == [rule[1:] for rule in expected], v
        assert rules[6:] == expected[6:], v  # local rules: the ids too
        if sbx.version().at_least(0, 35):  # `--wide` (the fallback when --json is not as documented) agrees
            assert sbx_output.parse_policy_table(sbx.run(["policy", "ls", "--wide"]).out) == got["rules"]
            with pytest.raises(ValueError, match="summary"):  # the default v0.35+ output lists no rules
                sbx_output.parse_policy_table(sbx.run(["policy", "ls"]).out)
        ids = {got["allow_id"]: "ALLOW", got["deny_id"]: "DENY"}
        results[v] = [replace(r, id=ids.get(r.id, ""), name=ids.get(r.id, r.name), applies_to="other"
                              if ids.get(r.id) == "DENY" else r.applies_to) for r in got["rules"]]
    assert all(result == results[sbx_versions[0]] for result in results.values())


@EDGES
def test_first_command_after_daemon_start(sbx: SbxCli) -> None:
    """A fresh fake prints `Starting sandboxd daemon...` before the first command's output."""
    assert sbx.run(["ls", "--json"]).out.startswith(sbx_output.DAEMON_START)
    assert sbx.ls() == []
    assert sbx.run(["ls"]).out.strip() == sbx_output.NO_SANDBOXES


@EDGES
def test_ls_table_equals_json(sbx: SbxCli, workspace: Path) -> None:
    sbx.policy_init("balanced")
    sbx.create("web", "shell", str(workspace))
    sbx.create("plain", "shell", str(workspace))
    sbx.run(["ports", "web", "--publish", "8080:3000"])
    sbx.run(["ports", "web", "--publish", "127.0.0.1:9090:9000/udp"])
    boxes = sbx.ls()
    assert sbx_output.parse_ls(sbx.run(["ls"]).out) == boxes
    proto = "tcp4" if sbx.version().at_least(0, 42) else "tcp"
    assert boxes[0].ports == (f"127.0.0.1:8080->3000/{proto}", "127.0.0.1:9090->9000/udp")
    assert boxes[1].ports == ()


@EDGES
def test_policy_rm_by_resource_and_by_id(sbx: SbxCli) -> None:
    sbx.policy_init("deny-all")
    first = policy(sbx, "allow", "localhost:12434,localhost:8080")
    second = policy(sbx, "allow", "example.com")
    policy(sbx, "rm", "--resource", "localhost:8080")
    assert [(r.id, r.resources) for r in sbx.policy_rules()] == [(first, ("localhost:12434",)),
                                                                 (second, ("example.com",))]
    policy(sbx, "rm", "--id", str(first))
    assert [r.id for r in sbx.policy_rules()] == [second]


@EDGES
def test_stop_exec_rm(sbx: SbxCli, workspace: Path) -> None:
    sbx.policy_init("balanced")
    sbx.create("box", "shell", str(workspace))
    sbx.stop("box")
    assert sbx.require("box").status == "stopped"
    assert sbx.exec("box", ["true"])[0] == 0
    assert sbx.require("box").status == "running"  # exec starts a stopped sandbox
    assert sbx.rm("box") is True
    assert not sbx.exists("box")
    assert sbx.rm("box", missing_ok=True) is False


@EDGES
def test_exec_passes_code_and_output_through(sbx: SbxCli, workspace: Path, tmp_path: Path) -> None:
    sbx.policy_init("balanced")
    sbx.create("box", "shell", str(workspace))
    script = 'echo "$GREETING from $(pwd)"; echo oops >&2; exit 3'
    assert sbx.exec("box", ["sh", "-c", script], env={"GREETING": "hi"}) == (3, f"hi from {workspace.resolve()}\n",
                                                                          "oops\n")
    assert sbx.exec("box", ["pwd"], workdir=str(tmp_path)) == (0, f"{tmp_path}\n", "")
    assert sbx.exec("box", ["sh", "-c", "exit 1"]) == (1, "", "")


@EDGES
def test_missing_sandbox_is_told_apart_from_exit_1(sbx: SbxCli, workspace: Path) -> None:
    """`sbx exec` itself exits 1 for both (SR#504); the adapter asks `sbx ls` first."""
    sbx.policy_init("balanced")
    sbx.create("box", "shell", str(workspace))
    assert sbx.run(["exec", "nope", "true"], check=False).code == sbx.run(["exec", "box", "false"], check=False).code
    with pytest.raises(ToolError) as caught:
        sbx.exec("nope", ["true"])
    assert caught.value.kind == "sandbox_not_found"
    assert sbx.exec("box", ["false"])[0] == 1
    for call in (lambda: sbx.stop("nope"), lambda: sbx.rm("nope")):  # these say it themselves, per version
        with pytest.raises(ToolError) as caught:
            call()
        assert caught.value.kind == "sandbox_not_found"
        assert "nope" in caught.value.message


@EDGES
def test_policy_check(sbx: SbxCli) -> None:
    sbx.policy_init("balanced")
    policy(sbx, "allow", "localhost:12434")
    policy(sbx, "deny", "*.githubusercontent.com")
    if not sbx.version().at_least(0, 35):
        with pytest.raises(ToolError) as caught:
            sbx.policy_check("localhost:12434")
        assert caught.value.kind == "unsupported"
        return
    assert sbx.policy_check("localhost:12434") is True
    assert sbx.policy_check("http://localhost:12434/engines/v1/models") is True
    assert sbx.policy_check("localhost:8080") is False
    assert sbx.policy_check("api.anthropic.com") is True  # from the preset, evaluated on port 443
    assert sbx.policy_check("a.b.amazonaws.com") is True  # `**.` matches any depth
    assert sbx.policy_check("raw.githubusercontent.com") is False  # deny beats the preset's allow
    assert sbx.policy_check("host.docker.internal:12434") is False  # check matches the literal name (SR#546)


@EDGES
def test_policy_log_same_entries_from_text_and_json(sbx: SbxCli, seed_log) -> None:
    sbx.policy_init("balanced")
    now = datetime.now().replace(microsecond=0)
    seed_log([
        seed_log.row("dmr-test", "localhost:12434", "domain-allowed", False, 42, now - timedelta(hours=1)),
        seed_log.row("dmr-test", "blocked.example.com:443", "domain-blocked", True, 1, now - timedelta(hours=2),
                     proxy="transparent", reason="default-deny"),
        seed_log.row("other", "api.anthropic.com:443", "domain-allowed", False, 3, now - timedelta(minutes=30)),
        seed_log.row("other", "evil.example.com:443", "user-denied", True, 2, now - timedelta(minutes=10)),
    ])
    with_reason = sbx.version().at_least(0, 35)
    expected = [
        PolicyLogEntry("other", "evil.example.com:443", "forward", "user-denied", True, 2,
                       (now - timedelta(minutes=10)).astimezone()),
        PolicyLogEntry("dmr-test", "blocked.example.com:443", "transparent", "domain-blocked", True, 1,
                       (now - timedelta(hours=2)).astimezone(), "default-deny" if with_reason else ""),
        PolicyLogEntry("other", "api.anthropic.com:443", "forward", "domain-allowed", False, 3,
                       (now - timedelta(minutes=30)).astimezone()),
        PolicyLogEntry("dmr-test", "localhost:12434", "forward", "domain-allowed", False, 42,
                       (now - timedelta(hours=1)).astimezone()),
    ]
    assert sbx.policy_log() == expected
    text = sbx.run(["policy", "log"]).out
    assert ("REASON" in text) == with_reason
    assert text.index("Blocked requests:") < text.index("Allowed requests:") if with_reason else \
        text.index("Allowed requests:") < text.index("Blocked requests:")
    assert sbx_output.parse_policy_log(text) == expected
    assert sbx.policy_log("dmr-test") == [e for e in expected if e.sandbox == "dmr-test"]


@EDGES
def test_empty_policy_log(sbx: SbxCli) -> None:
    sbx.policy_init("balanced")
    assert sbx.policy_log() == []
    assert sbx.run(["policy", "log"]).out.strip() == sbx_output.NO_LOG_ENTRIES
    assert sbx_output.parse_policy_log(sbx.run(["policy", "log"]).out) == []


def test_policy_init_uses_the_verb_the_version_knows(sbx: SbxCli) -> None:
    """v0.34 renamed `set-default` to `init`; the older fakes reject `init` as sbx would."""
    if not sbx.version().at_least(0, 34):
        with pytest.raises(ToolError) as caught:
            sbx.run(["policy", "init", "balanced"])
        assert caught.value.kind == "unsupported"
    sbx.policy_init("allow-all")
    assert [(r.name, r.resources) for r in sbx.policy_rules()] == [("default-allow-all", ("**",))]
    with pytest.raises(ValueError):
        sbx.policy_init("open")


def test_embedded_style_prefix(fake_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The prefix is data: here the fake run by the interpreter, as the embedded CLIs are (`python -m labkit sbx`)."""
    monkeypatch.setenv("FAKE_SBX_VERSION", "0.42.1")
    sbx = SbxCli([sys.executable, str(Path(os.environ["PATH"].split(os.pathsep)[0]) / "sbx")])
    assert str(sbx.version()) == "0.42.1"
    assert sbx.ls() == []
