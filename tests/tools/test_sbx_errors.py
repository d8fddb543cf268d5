"""Each known sbx failure becomes one ToolError of a known kind: one line of what happened, one of the fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from labkit.errors import ToolError
from labkit.tools.sbx_cli import SbxCli

pytestmark = [pytest.mark.timeout(60), pytest.mark.fast]


def caught(call) -> ToolError:
    with pytest.raises(ToolError) as info:
        call()
    return info.value


def assert_clear(err: ToolError, kind: str) -> None:
    assert err.kind == kind, repr(err)
    lines = str(err).splitlines()
    assert len(lines) == 2 and lines[1].startswith("  fix: "), str(err)
    assert err._render_traceback_() == lines  # what a notebook shows instead of a traceback


def test_not_signed_in(sbx: SbxCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "not_signed_in")
    err = caught(sbx.ls)
    assert_clear(err, "not_signed_in")
    assert "sbx login" in err.fix


def test_sign_in_flow_that_hangs_is_named_not_timed_out(fake_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a browser the sign-in flow waits; the adapter kills it and says what it was waiting for."""
    monkeypatch.setenv("FAKE_FAIL", "login_hang")
    assert_clear(caught(SbxCli(["sbx"], timeout=1.5).ls), "not_signed_in")


def test_daemon_down(sbx: SbxCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "daemon_down")
    err = caught(sbx.ls)
    assert_clear(err, "daemon_not_running")
    assert "sbx daemon start" in err.fix


def test_policy_not_initialised_names_the_verb_of_this_version(sbx: SbxCli, workspace: Path) -> None:
    err = caught(sbx.policy_rules)  # a fresh fake has no preset yet
    assert_clear(err, "policy_not_initialised")
    verb = "init" if sbx.version().at_least(0, 34) else "set-default"
    assert err.fix == f"run: sbx policy {verb} balanced"
    assert_clear(caught(lambda: sbx.create("box", "shell", str(workspace))), "policy_not_initialised")


def test_policy_uninitialised_by_injection(sbx: SbxCli, monkeypatch: pytest.MonkeyPatch) -> None:
    sbx.policy_init("balanced")
    monkeypatch.setenv("FAKE_FAIL", "policy_uninit")
    allow = ["policy", "allow", "network", "localhost:12434"]
    assert_clear(caught(lambda: sbx.run(allow)), "policy_not_initialised")


@pytest.mark.parametrize("version", ["0.23.0", "0.42.1"], indirect=True)
def test_sandbox_not_found_in_both_wordings(sbx: SbxCli) -> None:
    sbx.policy_init("balanced")
    for call in (lambda: sbx.exec("ghost", ["true"]), lambda: sbx.stop("ghost"), lambda: sbx.rm("ghost"),
                 lambda: sbx.run(["policy", "allow", "network", *sbx.scope_args("ghost"), "example.com"])):
        err = caught(call)
        assert_clear(err, "sandbox_not_found")
        assert err.message == "there is no sandbox named 'ghost'"


def test_tool_missing(fake_env: Path) -> None:
    err = caught(SbxCli(["sbx-that-is-not-installed"]).ls)
    assert_clear(err, "tool_missing")
    assert "LABKIT_MODE=embedded" in err.fix


def test_timeout(fake_env: Path) -> None:
    hang = [sys.executable, "-c", "import threading; threading.Event().wait()"]
    err = caught(SbxCli(hang, timeout=0.5).ls)
    assert_clear(err, "timeout")
    assert "0.5s" in err.message


@pytest.mark.parametrize("version", ["0.42.1"], indirect=True)
def test_unknown_failure_is_one_line_with_the_tools_words(sbx: SbxCli, workspace: Path) -> None:
    sbx.policy_init("balanced")
    sbx.create("web", "shell", str(workspace))
    sbx.run(["ports", "web", "--publish", "8080:3000"])
    err = caught(lambda: sbx.run(["ports", "web", "--publish", "8080:3000"]))
    assert err.kind == "command_failed"
    assert str(err) == ("`sbx ports web --publish 8080:3000` failed (exit 1): "
                        "ERROR: publish port: port 127.0.0.1:8080/tcp is already published")


@pytest.mark.parametrize("version", ["0.42.1"], indirect=True)
def test_fixes_for_the_mode(version: str) -> None:
    sbx = SbxCli(["sbx"], fixes={"sandbox_not_found": "labkit sbx create --name ghost shell ."})
    sbx.policy_init("balanced")
    assert caught(lambda: sbx.exec("ghost", ["true"])).fix == "labkit sbx create --name ghost shell ."
    assert caught(lambda: sbx.stop("ghost")).fix == "labkit sbx create --name ghost shell ."
