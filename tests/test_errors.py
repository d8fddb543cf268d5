"""One error tree, one home for each fix: what notebooks and terminals rely on when something fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import labkit
from labkit import fixes
from labkit._core import runner
from labkit._core.daemon import ServiceError
from labkit.dmr.store import ModelNotFound, StoreError
from labkit.errors import KINDS, LabError, ToolError
from labkit.runtime.modes import ModeError
from labkit.sbx.isolation import IsolationUnavailable
from labkit.sbx.policy import PolicyError
from labkit.sbx.store import SandboxError, SandboxNotFound

pytestmark = [pytest.mark.timeout(60), pytest.mark.fast]

PACKAGE = Path(labkit.__file__).parent
# A course command with a name or a resource filled in: a fix, built by fixes.py alone.
COMMAND_TEMPLATE = re.compile(r"(sbx create --name|sbx rm -f|docker model pull|sbx policy (allow|deny|rm) network) ?\{")


def test_every_failure_that_reaches_a_user_is_a_lab_error() -> None:
    for cls in (ToolError, runner.CommandFailed, ServiceError, ModeError, PolicyError, SandboxError,
                SandboxNotFound, IsolationUnavailable, StoreError, ModelNotFound):
        assert issubclass(cls, LabError), cls


def test_a_lab_error_says_what_happened_then_the_fix() -> None:
    err = ServiceError("model server exited during start (code 1)", "read the whole log: /tmp/dmr.log")
    assert str(err) == "model server exited during start (code 1)\n  fix: read the whole log: /tmp/dmr.log"
    assert err.line() == "✗ model server exited during start (code 1) — fix: read the whole log: /tmp/dmr.log"
    assert err._render_traceback_() == str(err).splitlines()  # what a notebook shows instead of a traceback


def test_an_error_without_a_fix_is_its_message_alone() -> None:
    assert str(StoreError("model not found")) == "model not found"
    assert ModelNotFound().line() == "✗ model not found"


def test_a_command_that_cannot_run_carries_its_install_hint_as_the_fix() -> None:
    result = runner.run(["curl-that-is-not-installed", "-s"], echo=False)
    err = runner.CommandFailed(result)
    assert err.message == "`curl-that-is-not-installed -s` failed: curl-that-is-not-installed: command not found"
    assert err.fix == "check the spelling, or install it"
    with pytest.raises(LabError):  # what callers catch
        result.check()


def test_an_unknown_mode_lists_the_valid_ones_as_the_fix() -> None:
    err = ModeError("unknown mode 'x' (from argument)", "use one of: live, embedded, auto")
    assert str(err).splitlines()[1] == "  fix: use one of: live, embedded, auto"


def test_embedded_fixes_name_only_known_failure_kinds() -> None:
    embedded = fixes.embedded("ai/smollm2:135M-Q4_1")
    assert set(embedded) <= set(KINDS)
    assert embedded["dmr_not_running"] == "start the embedded lab: labkit up"
    assert "ai/smollm2:135M-Q4_1" in embedded["model_not_found"] and fixes.USE_LIVE in embedded["model_not_found"]


@pytest.mark.parametrize("fact", ["docker desktop enable model-runner", "scripts/llama-build.sh --force",
                                  "it installs the pinned agents", "sign in once in a terminal",
                                  "Docker Engine: docker model install-runner", "start the embedded lab:",
                                  "run the command in a terminal to see why"])
def test_each_fix_is_written_once_in_fixes(fact: str) -> None:
    homes = [p.relative_to(PACKAGE).as_posix() for p in sorted(PACKAGE.rglob("*.py")) if fact in p.read_text()]
    assert homes == ["fixes.py"]


def test_fix_commands_with_a_name_filled_in_are_built_only_in_fixes() -> None:
    homes = [p.relative_to(PACKAGE).as_posix() for p in sorted(PACKAGE.rglob("*.py"))
             if COMMAND_TEMPLATE.search(p.read_text())]
    assert homes == ["fixes.py"]


def test_the_standalone_agent_spells_its_fixes_as_fixes_does() -> None:
    text = (PACKAGE / "agent.py").read_text()
    assert f"({fixes.pull_model('ai/smollm2:135M-Q4_1')})" in text
    assert fixes.allow_network("localhost:{port}") in text


def test_fix_commands_are_what_a_learner_types() -> None:
    assert fixes.allow_network("localhost:12434") == "sbx policy allow network localhost:12434"
    assert fixes.deny_network("example.com", sandbox="box") == "sbx policy deny network --sandbox box example.com"
    assert fixes.remove_rule("localhost:12434") == "sbx policy rm network --resource localhost:12434"
    assert fixes.create_sandbox("box") == "sbx create --name box shell ."
    assert fixes.remove_sandbox("box") == "sbx rm -f box"
    assert fixes.pull_model("ai/smollm2") == "docker model pull ai/smollm2"
    assert fixes.allow_model_port(8080) == "allow the model port (notebook 03): sbx policy allow network localhost:8080"
    assert fixes.START_DMR.startswith("docker desktop enable model-runner --tcp 12434")
