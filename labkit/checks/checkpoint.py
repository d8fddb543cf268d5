"""Notebook 09: the module's five checkpoint items, each verified again from the evidence left behind.

``checkpoint`` returns a ``Checkpoint`` (data, printable); the checklist widget in
``labkit.widgets.checklist`` shows one, and re-runs ``checkpoint`` when asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .evidence import AGENT_PATH, HOST_ALIAS, crossing, is_live, log_entries, log_line, no_crossing, workspace_of
from .result import FAIL_MARK, CheckResult, failed, guarded, passed, verdict_line
from .steps import chat_completion, sdk_client

if TYPE_CHECKING:
    from ..lab import Lab


@dataclass(frozen=True)
class Checkpoint:
    """The module's five checkpoint items, each verified from evidence."""

    items: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items)

    @property
    def lines(self) -> list[str]:
        return [item.line for item in self.items]

    def summary(self) -> str:
        """One deterministic line: all verified, or how many are not yet."""
        if self.ok:
            return verdict_line(True, f"Checkpoint: all {len(self.items)} verified")
        missing = sum(not i.ok for i in self.items)
        return verdict_line(False, f"Checkpoint: {missing} of {len(self.items)} not verified yet")

    def __str__(self) -> str:
        return "\n".join([self.summary(), *map(str, self.items)])

    __repr__ = __str__

    def _ipython_display_(self) -> None:
        print(self)


def _numbered(n: int, result: CheckResult, text: str) -> CheckResult:
    """Re-title a step's result as checkpoint item ``n``; a ✗ keeps its reason as evidence, and its fix."""
    if result.ok:
        return CheckResult(True, verdict_line(True, f"{n}. {text}"), result.evidence)
    reason = result.line.removeprefix(f"{FAIL_MARK} ").split(" — fix: ")[0]
    return CheckResult(False, verdict_line(False, f"{n}. {text}", result.fix),
                       (f"not verified: {reason}", *result.evidence), result.fix)


def _item(lab: Lab, name: str, what: str, fix: str, path: re.Pattern[str] | None = None,
          via_alias: bool = False) -> CheckResult:
    """A checkpoint item that needs one allowed, answered request from ``name`` (``what`` names it)."""

    def probe() -> CheckResult:
        crossed = crossing(lab, name, path, via_alias=via_alias)
        if crossed:
            return passed(what, [crossed])
        reason, last = no_crossing(lab, name, "request")
        return failed(reason, fix, last)

    return guarded(what, probe)


def _watched(lab: Lab, name: str) -> CheckResult:
    """Item 5: `sbx policy log N` (the aggregated view, both modes) shows the agent's allowed connections."""

    def probe() -> CheckResult:
        rows = log_entries(lab, name, blocked=False)
        if not rows:
            return failed(f"sbx policy log {name} has no allowed {lab.endpoints.rule} entry",
                          f"sbx policy log {name}   (after Step 8's agent run)")
        return passed("the policy log shows them", [log_line(name, rows[0])])

    return guarded("item 5", probe)


def checkpoint(lab: Lab, sandbox: str = "dmr-test", agent_sandbox: str = "dmr-claude",
               workspace: str | Path | None = None, script: str = "test_local.py") -> Checkpoint:
    """The module's checkpoint, item by item, from the audit records (embedded) or `sbx policy log` (live).

    ``sandbox`` is the shell sandbox of steps 2–7, ``agent_sandbox`` the coding agent's of step 8;
    both may already be removed: the audit log outlives them. ``workspace`` is where ``script`` was written.
    """
    port = lab.endpoints.port
    workspace = workspace or workspace_of(lab, sandbox, None) or workspace_of(lab, agent_sandbox, None)
    paths_note = " (sbx policy log: allowed requests to the model port; it records no paths)" if is_live(lab) else ""
    first = _item(lab, sandbox, "item 1", f"sbx exec {sandbox} curl -s {lab.endpoints.sandbox}/models",
                  via_alias=True)
    chat = chat_completion(lab, sandbox)
    sdk = sdk_client(lab, sandbox, workspace, script)
    agent = _item(lab, agent_sandbox, "item 4",
                  f"Step 8: run the agent in {agent_sandbox} (notebook 08)", AGENT_PATH)
    watched = _watched(lab, agent_sandbox)
    return Checkpoint((
        _numbered(1, first, f"Reached DMR from inside the sandbox via {HOST_ALIAS}:{port}{paths_note}"),
        _numbered(2, chat, f"Ran a chat completion against a local model{paths_note}"),
        _numbered(3, sdk, "Pointed a Python OpenAI SDK client at the local endpoint"),
        # the module's text says "via OPENAI_BASE_URL"; current agents need their generated configuration (Step 8)
        _numbered(4, agent, "Pointed a coding agent at the local model"),
        _numbered(5, watched, f"Watched the connections in sbx policy log {agent_sandbox}"),
    ))
