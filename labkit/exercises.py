"""The learner's exercises at the end of each step, checked from real evidence.

Each function prints one deterministic line, ``✓ exercise: …`` or ``✗ exercise: … — fix: …``
(the fix is the folded solution in one line), and returns the ``CheckResult``. Like the
checkpoints, they read state: the model API, `sbx ls`, the policy store, the workspace,
the proxy's audit records. In live mode, where sbx keeps no per-request records, the
request-level exercises say what they could not check instead of guessing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from . import fixes
from .checks.evidence import AGENT_PATH, CHAT_PATH, is_live, model_records, record_line
from .checks.result import CheckResult, failed, passed

if TYPE_CHECKING:
    from .lab import Lab
    from .sbx.audit import AuditRecord

MODEL_BY_ID = re.compile(r"/v1/models/.+")


def _show(result: CheckResult) -> CheckResult:
    return result.show()


def model_id(lab: Lab, value: str) -> CheckResult:
    """Step 1: the model server answers to ``value`` (any spelling it accepts: the listed id, or without
    ``docker.io/``), asked the way a client would ask (`GET …/v1/models/{value}`)."""
    fix = "set MY_MODEL_ID to the id in the HTTP list, e.g. MY_MODEL_ID = lab.model_ids()[0]"
    if not value:
        return _show(failed("exercise: MY_MODEL_ID is empty (expected until you paste an id)", fix))
    answered = lab.api.model_id_for(value)
    if answered is None:
        return _show(failed(f"exercise: the model server does not know '{value}': check the spelling, "
                            "and that the quantization tag is part of the name", fix))
    listed = "" if answered == value else f" (it lists it as '{answered}')"
    return _show(passed(f"exercise: the model server answers to '{value}'{listed}", []))


def second_sandbox(lab: Lab, name: str) -> CheckResult:
    """Step 2: a second sandbox ``name`` exists."""
    if lab.sandbox(name).exists:
        return _show(passed(f"exercise: sandbox '{name}' exists (sbx ls)", []))
    return _show(failed(f"exercise: no sandbox named '{name}' yet",
                        f'lab.host("{fixes.create_sandbox(name)}", cwd=WORKDIR)'))


def extra_rule(lab: Lab, host: str) -> CheckResult:
    """Step 3: the learner's own local allow rule for ``host`` (the preset's rules do not count)."""
    mine = [r for r in lab.policy.rules_for(host) if r.decision == "allow" and r.origin == "local"]
    if mine:
        return _show(passed(f"exercise: your local rule allows {host}",
                            [f"sbx policy ls: allow {', '.join(mine[0].resources)}"]))
    return _show(failed(f"exercise: no local allow rule for {host} yet",
                        f'lab.host("{fixes.allow_network(host)}")'))


def workspace_file(workdir: str, name: str, contains: str | None = None, what: str = "") -> CheckResult:
    """Steps 4 and 7: the file ``name`` is in the workspace (and, if given, contains ``contains``,
    which ``what`` names in the learner's words, e.g. "the sandbox's hostname")."""
    path = Path(workdir).expanduser() / name
    if not path.is_file():
        return _show(failed(f"exercise: {name} is not in the workspace yet (expected until you write it)",
                            "see the folded solution above"))
    if contains is not None and contains not in path.read_text(errors="replace"):
        wanted = f"{what} ('{contains}')" if what else f"'{contains}'"
        return _show(failed(f"exercise: {name} is there, but does not hold {wanted}",
                            "see the folded solution above"))
    return _show(passed(f"exercise: {name} is in the workspace {workdir}", []))


def _requests(lab: Lab, sandbox: str, path: re.Pattern[str]) -> list[AuditRecord]:
    return model_records(lab, sandbox, path)


def _live_note(what: str) -> CheckResult:
    return _show(passed(f"exercise: {what} — not checkable in live mode (sbx's log keeps no paths); "
                        "look for it in `sbx policy log`", []))


def model_by_id(lab: Lab, sandbox: str) -> CheckResult:
    """Step 5: the sandbox asked for one model by id (an allowed GET …/v1/models/<id>, HTTP 200)."""
    if is_live(lab):
        return _live_note("a request for one model by id")
    found = _requests(lab, sandbox, MODEL_BY_ID)
    if found:
        return _show(passed("exercise: the sandbox fetched one model by id", [record_line(found[0])]))
    return _show(failed(f"exercise: no request for one model by id from {sandbox} yet",
                        f'box.exec(f"curl -s {lab.endpoints.sandbox}/models/{{lab.model_ids()[0]}}")'))


def prompt_sent(lab: Lab, sandbox: str) -> CheckResult:
    """Step 6: at least two chat completions from the sandbox (the notebook's and the learner's)."""
    if is_live(lab):
        return _live_note("a second chat completion")
    if len(_requests(lab, sandbox, CHAT_PATH)) >= 2:
        return _show(passed(f"exercise: {sandbox} sent a second chat completion", []))
    return _show(failed(f"exercise: {sandbox} has sent one chat completion so far",
                        "change PROMPT and re-run the curl cell, or use the prompt panel"))


def agent_after_restore(lab: Lab, sandbox: str) -> CheckResult:
    """Step 8: the agent reached the model again after its requests were blocked (access restored)."""
    if is_live(lab):
        return _live_note("an agent run after restoring the rule")
    records = [r for r in lab.audit.records(sandbox) if r.normalized == lab.endpoints.rule]
    last_block = max((i for i, r in enumerate(records) if r.decision == "deny"), default=None)
    if last_block is None:
        return _show(failed("exercise: the agent was not blocked yet; run 'Try breaking it' first",
                            "run the deny cell and the blocked agent cell above"))
    later = [r for r in records[last_block + 1:] if r.decision == "allow" and AGENT_PATH.search(r.url)]
    if later:
        return _show(passed("exercise: the agent reached the model again after you restored the rule", []))
    return _show(failed("exercise: no agent run since access was restored (expected until you run one)",
                        'cbox.exec(claude.command("your task"), env=claude.env, timeout=AGENT_TIMEOUT)'))
