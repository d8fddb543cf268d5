"""The notebooks' checkpoint cells: ``stepN_…`` and the agent checks, each prints its result and returns it.

``echo=False`` returns without printing (the tests, and a cell that combines several). The
building blocks they combine live in ``steps`` and ``policy``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import fixes
from .._core.runner import Result
from .evidence import (
    AGENT_PATH,
    HOST_ALIAS,
    is_live,
    is_model_port,
    log_entries,
    log_line,
    model_records,
    no_crossing,
    pretty_path,
    record_line,
    workspace_of,
)
from .policy import model_port_allowed, rule_in_force
from .result import CheckResult, all_of, failed, guarded, passed
from .steps import (
    agent_reached,
    blocked_by_deny,
    chat_completion,
    inside_sandbox,
    model_pulled,
    networking_facts,
    reached_model_api,
    sandbox_listed,
    sdk_client,
)

if TYPE_CHECKING:
    from ..lab import Lab


def _ran(run: Result, step: str, what: str, fix: str, codes: tuple[int, ...] = (0,)) -> CheckResult:
    """A command the notebook ran: it finished with one of ``codes`` and printed something."""
    code, out = run.returncode, run.stdout.strip()
    if run.error:
        return failed(f"{step}: {what} did not run: {run.error}", fix)
    if code not in codes:
        said = next((ln.strip() for ln in reversed(run.output.splitlines()) if ln.strip()), "")
        return failed(f"{step}: {what} failed (exit {code}{': ' + said[:120] if said else ''})", fix)
    if not out:
        return failed(f"{step}: {what} printed nothing (exit {code})", fix)
    return passed(f"{step}: {what}", [f"{what}: exit {code}, printed output"] if codes == (0,) else
                  [f"{what}: finished (exit {' or '.join(map(str, codes))})"])


def _shown(result: CheckResult, echo: bool) -> CheckResult:
    return result.show() if echo else result


def step1_models(lab: Lab, model: str, *, echo: bool = True) -> CheckResult:
    """Notebook 01: the model is pulled and served (`docker model ls`, `GET …/v1/models`)."""
    return _shown(model_pulled(lab, model), echo)


def step2_sandbox(lab: Lab, name: str, workdir: str | Path | None = None, *, echo: bool = True) -> CheckResult:
    """Notebook 02: `sbx ls` lists the sandbox, with ``workdir`` as its workspace when given."""
    result = sandbox_listed(lab, name)
    if result.ok and workdir is not None:
        mounted = workspace_of(lab, name, None)
        wanted = Path(workdir).expanduser()
        if mounted is None or mounted.resolve() != wanted.resolve():
            result = failed(f"Step 2: {name}'s workspace is {mounted and pretty_path(mounted)}, "
                            f"not {pretty_path(wanted)}",
                            f"{fixes.remove_sandbox(name)}, then: cd {workdir} && {fixes.create_sandbox(name)}",
                            result.evidence)
        else:
            result = CheckResult(True, result.line, (*result.evidence, f"workspace: {pretty_path(wanted)} "
                                                     "(mounted at the same path inside)"))
    return _shown(result, echo)


def step3_policy(lab: Lab, *, echo: bool = True) -> CheckResult:
    """Notebook 03: the allow rule for the model port is in force (and no deny overrides it)."""
    return _shown(model_port_allowed(lab), echo)


def step4_inside(lab: Lab, name: str, *, echo: bool = True) -> CheckResult:
    """Notebook 04: a command runs inside (hostname there = the sandbox's name)."""
    return _shown(inside_sandbox(lab, name), echo)


def step5_network(lab: Lab, name: str, *, echo: bool = True) -> CheckResult:
    """Notebook 05: the models were listed through the proxy, and the three networking facts hold.

    The process tier (no namespaces) shares the host's loopback and DNS: there the facts are
    not required, and the evidence says so.
    """
    parts = [reached_model_api(lab, name)]
    if lab.tier == "process":
        parts.append(passed("", ["networking facts: not enforced in the process tier (no network namespace)"]))
    else:
        parts.append(networking_facts(lab, name))
    result = all_of("Step 5", f"{name} reached the model API through the proxy; localhost is its own; "
                    f"only {HOST_ALIAS} reaches the host", parts)
    return _shown(result, echo)


def _reply_facts(answer: dict[str, Any] | str | Result) -> CheckResult:
    """A chat completion as the notebook got it (JSON dict, its text, or the `sbx exec` result)."""
    text = answer.stdout if isinstance(answer, Result) else answer
    data: Any = text
    if isinstance(text, str):
        try:
            data = json.loads(text[text.find("{"):]) if "{" in text else None
        except ValueError:
            data = None
    if not isinstance(data, dict):
        return failed("Step 6: the answer is not a chat completion's JSON",
                      "run the curl cell again and read its output")
    choice = (data.get("choices") or [{}])[0]
    content = ((choice.get("message") or {}).get("content") or "").strip()
    if data.get("object") != "chat.completion" or not content:
        return failed("Step 6: the answer has no choices[0].message.content", "check the model id with docker model ls")
    return passed("", ["answer: a chat.completion with text in choices[0].message.content"])


def step6_chat(lab: Lab, name: str, answer: dict[str, Any] | str | Result | None = None, *,
               echo: bool = True) -> CheckResult:
    """Notebook 06: a chat completion crossed the boundary (audit), and the answer has OpenAI's shape."""
    parts = [chat_completion(lab, name)] + ([_reply_facts(answer)] if answer is not None else [])
    return _shown(all_of("Step 6", f"a chat completion from {name} crossed the boundary and came back", parts), echo)


def step7_sdk(lab: Lab, name: str, workdir: str | Path | None = None, run: Result | None = None, *,
              script: str = "test_local.py", echo: bool = True) -> CheckResult:
    """Notebook 07: ``script`` points the OpenAI SDK at the local endpoint, it ran, its request was audited."""
    parts = [sdk_client(lab, name, workdir, script)]
    if run is not None:
        parts.append(_ran(run, "Step 7", f"python3 {script}", f"sbx exec {name} python3 {script}"))
    result = all_of("Step 7", f"{script} used the OpenAI SDK against the local model, through the proxy", parts)
    return _shown(result, echo)


def agent_run(lab: Lab, name: str, run: Result | None = None, *, echo: bool = True) -> CheckResult:
    """Notebook 08: the agent's requests reached the local model through the proxy.

    Exit 0 (its program ran) and 1 (the small model's program never worked) both mean the
    agent talked to the model; what the program printed is the learner's to judge.
    """
    parts = [agent_reached(lab, name)]
    if run is not None and not is_live(lab):
        # With a 135M model an agent may finish (exit 0), give up (exit 1) or be stopped at the notebook's
        # bound: none of it says anything about the wiring, which the audit record above shows.
        stopped = "timed out" in (run.error or "")
        ran = (passed("", ["the agent: ran (exit 0 or 1, or stopped at the notebook's time bound)"])
               if stopped or run.returncode in (0, 1) else
               _ran(run, "Step 8", "the agent", "read the agent's output above", codes=(0, 1)))
        parts.append(ran)
    elif run is not None:
        parts.append(_ran(run, "Step 8", "the agent", "read the agent's output above"))
    return _shown(all_of("Step 8", f"the agent in {name} used the local model through the proxy", parts), echo)


def agent_blocked(lab: Lab, name: str, blocked: Result | None = None, *, echo: bool = True) -> CheckResult:
    """Notebook 08, "try breaking it": the agent failed, and the proxy blocked its requests by the deny rule."""
    parts = [blocked_by_deny(lab, name)]
    if blocked is not None:
        code = blocked.returncode
        parts.append(passed("", [f"the agent failed (exit {code}): it could not reach the model"]) if code else
                     failed("Step 8: the agent still succeeded under the deny rule",
                            f"{fixes.LIST_RULES}: is the deny rule for {lab.endpoints.rule} there?"))
    return _shown(all_of("Step 8", f"the deny rule cut the agent in {name} off from the model", parts), echo)


def agent_answered(lab: Lab, name: str, *, echo: bool = True) -> CheckResult:
    """Notebook 08: what the model server said to the agent's requests, from the proxy's records.

    A request can cross the boundary and still be refused by the model server: Docker Model
    Runner after 1.2.6 answers Codex's `include` field with HTTP 400. This check passes when the
    agent's requests reached the server and says what it answered (embedded: per status).
    """
    def probe() -> CheckResult:
        if is_live(lab):
            rows = [e for e in log_entries(lab, name, False) if is_model_port(e, lab.port)]
            if not rows:
                return failed(f"Step 8: sbx policy log {name} shows no request to {lab.endpoints.rule}",
                              f"run the agent in {name} (the cell above)")
            return passed(f"Step 8: the agent in {name} reached the model port (sbx's log has no HTTP status: "
                          "the agent's own output above says whether the model answered)", [log_line(name, rows[0])])
        records = model_records(lab, name, AGENT_PATH, status=None)
        if not records:
            reason, last = no_crossing(lab, name, "model request")
            return failed(f"Step 8: {reason}", f"run the agent in {name} (the cell above)", last)
        statuses = sorted({r.status for r in records})
        refused = [r for r in records if r.status >= 400]
        what = (f"the agent in {name} reached the model server: {len(records)} request(s), "
                f"HTTP {', '.join(map(str, statuses))}")
        if refused:
            what += " (the model server refused some: see its request log)"
        return passed(f"Step 8: {what}", [record_line(r) for r in records[-3:]])

    return _shown(guarded("Step 8", probe), echo)


def only_model_port(lab: Lab, name: str, *, echo: bool = True) -> CheckResult:
    """Notebook 08: every destination the agent in ``name`` tried, and that only the model port was reached."""
    def probe() -> CheckResult:
        target = lab.endpoints.rule
        if is_live(lab):
            rows = lab.audit.log(name)
            reached = any(not e.blocked and is_model_port(e, lab.port) for e in rows)
            others = sorted({e.host for e in rows if not e.blocked and not is_model_port(e, lab.port)})
            lines = [log_line(name, e) for e in rows]
        else:
            records = lab.audit.records(name)
            reached = any(r.normalized == target and r.decision == "allow" for r in records)
            others = sorted({r.normalized for r in records if r.normalized != target and r.decision == "allow"})
            # decisions, not counts: how often an agent retries varies from run to run
            lines = [f"{dest}: " + " and ".join(sorted({"allowed" if r.decision == "allow" else "blocked"
                                                        for r in records if r.normalized == dest}))
                     for dest in dict.fromkeys(r.normalized for r in records)]
        if not reached:
            return failed(f"Step 8: no allowed request from {name} to {target}", f"run the agent in {name}", lines)
        if others:
            return failed(f"Step 8: the agent in {name} also reached {', '.join(others)}",
                          f"deny them: {fixes.deny_network(','.join(others))}", lines)
        return passed(f"Step 8: the agent in {name} reached only the model port, {target}", lines)

    return _shown(guarded("Step 8", probe), echo)


def step8_agent(lab: Lab, name: str, *, echo: bool = True) -> CheckResult:
    """Notebook 08: the agent used the model, a deny rule blocked it, and the allow rule is in force again."""
    restored = rule_in_force(lab, "allow", step="Step 8")
    parts = [agent_reached(lab, name), blocked_by_deny(lab, name), restored]
    result = all_of("Step 8", f"the agent in {name} used the local model, a deny rule blocked it, "
                    "access is restored", parts)
    return _shown(result, echo)
