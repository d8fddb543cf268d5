"""Checkpoints verified from real evidence: one deterministic ✓/✗ line each, with the fix when ✗.

A checkpoint never trusts that a cell ran: it reads the state the step leaves behind — the
model store and API, `sbx ls`, the policy rules, a command run inside the sandbox, the
proxy's audit records, files in the workspace. Lines and evidence carry no times, ids,
counts or durations, so a re-run prints the same text (nbval compares it); a record cited
as evidence is the oldest that qualifies, so later traffic does not change it.

Embedded mode keeps one audit record per request (method, path, status); real sbx keeps
only `sbx policy log`, aggregated per host. Where a step needs per-request detail, live
mode checks what the log can show and the line says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .live.errors import ToolError
from .records import PolicyLogEntry, PolicyRule, display_name
from .shell import CommandFailed

if TYPE_CHECKING:
    from .lab import Lab

HOST_ALIAS = "host.docker.internal"
MODELS_PATH = re.compile(r"/v1/models/?$")
CHAT_PATH = re.compile(r"/chat/completions/?$")
AGENT_PATH = re.compile(r"/(chat/completions|responses)/?$")  # labkit's agent | Codex (Responses API)


@dataclass(frozen=True)
class CheckResult:
    """One checkpoint: ``ok``, the deterministic line (✓/✗, with the fix when ✗), and what was looked at."""

    ok: bool
    line: str
    evidence: tuple[str, ...] = ()
    fix: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return "\n".join([self.line, *(f"    · {item}" for item in self.evidence)])

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython: the text, not a dataclass dump
        p.text(str(self))


def _pass(what: str, evidence: Iterable[str]) -> CheckResult:
    return CheckResult(True, f"✓ {what}", tuple(evidence))


def _fail(what: str, fix: str, evidence: Iterable[str] = ()) -> CheckResult:
    line = f"✗ {what}" + (f" — fix: {fix}" if fix else "")
    return CheckResult(False, line, tuple(evidence), fix)


def _tool_failure(what: str, err: ToolError | CommandFailed) -> CheckResult:
    """A tool that cannot answer is a ✗ with its own fix, never a traceback."""
    if isinstance(err, ToolError):
        return _fail(f"{what}: {err.message}", err.fix or "run `labkit doctor`")
    return _fail(f"{what}: {err}", "run the command in a terminal to see why")


def _guarded(what: str, probe: Callable[[], CheckResult]) -> CheckResult:
    try:
        return probe()
    except (ToolError, CommandFailed) as err:
        return _tool_failure(what, err)


def _live(lab: Lab) -> bool:
    return lab.resolution.sandboxes.kind == "live"


def _pretty_path(path: Path) -> str:
    """A path under the home folder as ``~/…`` (committed outputs must not show the machine's paths)."""
    try:
        return "~/" + str(path.resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------ evidence readers


def _model_records(lab: Lab, sandbox: str | None, path: re.Pattern[str] | None = None,
                   decision: str | None = "allow", status: int | None = 200) -> list[Any]:
    """The proxy's records of requests from ``sandbox`` to the model port, oldest first (embedded)."""
    target = lab.endpoints.rule
    found = []
    for rec in lab.audit.records(sandbox, decision):
        if rec.normalized != target or (status is not None and rec.status != status):
            continue
        if path is not None and not path.search(urlsplit(rec.url).path if "://" in rec.url else ""):
            continue
        found.append(rec)
    return found


def _record_line(rec: Any) -> str:
    """One record as evidence: what, from where, to where, decided by which rule, with what status."""
    path = urlsplit(rec.url).path if "://" in rec.url else rec.url
    verdict = "allowed" if rec.decision == "allow" else "blocked"
    rule = rec.rule.get("text") or rec.rule.get("id", "")
    return (f"audit record: {rec.method} {path} from sandbox {rec.sandbox} via {rec.host}:{rec.port} → "
            f"{verdict} by '{rule}', HTTP {rec.status}")


def _is_model_port(entry: PolicyLogEntry, port: int) -> bool:
    host, _, entry_port = entry.host.rpartition(":")
    return entry_port == str(port) and host.strip("[]") in ("localhost", HOST_ALIAS, "127.0.0.1", "::1")


def _log_entries(lab: Lab, sandbox: str, blocked: bool) -> list[PolicyLogEntry]:
    """`sbx policy log SANDBOX` rows for the model port (both modes)."""
    return [e for e in lab.audit.log(sandbox) if e.blocked == blocked and _is_model_port(e, lab.endpoints.port)]


def _log_line(sandbox: str, entry: PolicyLogEntry) -> str:
    state = "blocked" if entry.blocked else "allowed"
    return f"sbx policy log {sandbox}: {state} {entry.host} ({entry.rule}, {entry.proxy} proxy)"


def _workspace(lab: Lab, sandbox: str, workspace: str | Path | None) -> Path | None:
    """The folder mounted in the sandbox (same path inside and out), or the one given."""
    if workspace is not None:
        return Path(workspace).expanduser()
    info = lab.sandbox(sandbox).info
    return Path(info.workspaces[0]) if info and info.workspaces else None


# ------------------------------------------------------------------ step checkpoints


def model_pulled(lab: Lab, model: str) -> CheckResult:
    """Step 1: ``model`` is in the local store (`docker model ls`) and the OpenAI API lists it."""
    what = f"Step 1: the model {model} is in the local store"

    def probe() -> CheckResult:
        wanted = display_name(model)
        local = next((m for m in lab.models() if wanted in {display_name(t) for t in m.tags}), None)
        if local is None:
            return _fail(f"Step 1: {model} is not in the local model store", f"docker model pull {model}",
                         ["docker model ls: not listed"])
        ids = [i for i in lab.model_ids() if display_name(i) == wanted]
        evidence = [f"docker model ls: {local.name} ({local.parameters}, {local.quantization}, {local.size})"]
        if not ids:
            return _fail(f"Step 1: {model} is pulled but {lab.endpoints.host}/models does not list it",
                         "check the runner: docker model status", evidence)
        evidence.append(f"GET /engines/llama.cpp/v1/models: id {ids[0]}")
        return _pass(f"{what} and the model API serves it as {ids[0]}", evidence)

    return _guarded(what, probe)


def sandbox_listed(lab: Lab, name: str) -> CheckResult:
    """Step 2: `sbx ls` lists the sandbox."""
    what = f"Step 2: sandbox {name} exists"

    def probe() -> CheckResult:
        info = lab.sandbox(name).info
        if info is None:
            return _fail(f"Step 2: `sbx ls` does not list a sandbox named {name}",
                         f"sbx create --name {name} shell .", ["sbx ls: not listed"])
        return _pass(f"{what} (agent {info.agent})", [f"sbx ls: {info.name} {info.agent} {info.status}"])

    return _guarded(what, probe)


def _rule_text(rule: PolicyRule) -> str:
    scope = "all sandboxes" if rule.applies_to == "all" else f"sandbox {rule.applies_to}"
    return f"sbx policy ls: {rule.decision} {','.join(rule.resources)} ({rule.origin}, {scope})"


def rule_in_force(lab: Lab, decision: str = "allow", resource: str | None = None,
                  sandbox: str | None = None, step: str = "") -> CheckResult:
    """Steps 3 and 8: the rule in force for ``resource`` (default the model port) is ``decision``.

    Deny beats allow, so "allow" needs an allow rule and no deny rule that applies.
    """
    resource = resource or lab.endpoints.rule
    pre = f"{step}: " if step else ""
    what = f"{pre}the network policy {'allows' if decision == 'allow' else 'denies'} {resource}"

    def probe() -> CheckResult:
        rules = [r for r in lab.policy.rules_for(resource) if r.applies_to in ("all", sandbox or "all")]
        evidence = [_rule_text(r) for r in rules] or [f"sbx policy ls: no rule names {resource}"]
        allows = [r for r in rules if r.decision == "allow"]
        denies = [r for r in rules if r.decision == "deny"]
        scope = f" --sandbox {sandbox}" if sandbox else ""
        if decision == "allow":
            if denies:
                return _fail(f"{pre}a deny rule for {resource} is in force (deny beats allow)",
                             f"sbx policy rm network{scope} --resource {resource}", evidence)
            if not allows:
                return _fail(f"{pre}no rule allows {resource}: the default deny applies",
                             f"sbx policy allow network{scope} {resource}", evidence)
        elif not denies:
            return _fail(f"{pre}no deny rule names {resource}", f"sbx policy deny network{scope} {resource}", evidence)
        return _pass(what, evidence)

    return _guarded(what, probe)


def model_port_allowed(lab: Lab) -> CheckResult:
    """Step 3: `sbx policy allow network localhost:12434` is in force (and no deny overrides it)."""
    return rule_in_force(lab, "allow", step="Step 3")


def policy_check(lab: Lab, target: str, allowed: bool = True, sandbox: str | None = None) -> CheckResult:
    """Exercise of step 3: `sbx policy check network TARGET` gives the expected verdict."""
    verdict = "Allowed" if allowed else "Denied"
    what = f"sbx policy check network {target} says {verdict}"

    def probe() -> CheckResult:
        got = lab.policy.check(target, sandbox)
        evidence = [f"sbx policy check network {target}: {'Allowed' if got else 'Denied'}"]
        if got == allowed:
            return _pass(what, evidence)
        fix = f"sbx policy {'allow' if allowed else 'deny'} network {target}"
        return _fail(f"sbx policy check network {target} says {'Allowed' if got else 'Denied'}", fix, evidence)

    return _guarded(what, probe)


def inside_sandbox(lab: Lab, name: str) -> CheckResult:
    """Step 4: a command really runs inside: `hostname` there answers the sandbox's name."""
    what = f"Step 4: commands run inside sandbox {name}"

    def probe() -> CheckResult:
        box = lab.sandbox(name)
        if not box.exists:
            return _fail(f"Step 4: there is no sandbox named {name}", f"sbx create --name {name} shell .")
        result = box.exec("hostname", echo=False)
        got = result.stdout.strip()
        evidence = [f"sbx exec {name} hostname: {got or result.error or f'exit {result.returncode}'}"]
        if not result.ok or got != name:
            return _fail(f"Step 4: hostname inside {name} is not {name}", f"sbx exec {name} hostname", evidence)
        return _pass(f"{what} (hostname = {name})", evidence)

    return _guarded(what, probe)


def networking_facts(lab: Lab, name: str) -> CheckResult:
    """Step 5's three facts, each run inside: localhost is the sandbox's own (refused),
    host.docker.internal resolves, model-runner.docker.internal does not."""
    what = f"Step 5: the three networking facts hold inside {name}"
    port = lab.endpoints.port

    def probe() -> CheckResult:
        box = lab.sandbox(name)
        if not box.exists:
            return _fail(f"Step 5: there is no sandbox named {name}", f"sbx create --name {name} shell .")
        refused = box.exec(f"curl -s -o /dev/null localhost:{port}", echo=False)
        alias = box.exec(f"getent hosts {HOST_ALIAS}", echo=False)
        other = box.exec("getent hosts model-runner.docker.internal", echo=False)
        facts = [
            (refused.returncode == 7, f"curl localhost:{port} inside: "
             + ("connection refused (curl exit 7)" if refused.returncode == 7 else f"curl exit {refused.returncode}")),
            (alias.ok, f"getent hosts {HOST_ALIAS}: " + ("resolves" if alias.ok else "does not resolve")),
            (other.returncode == 2, "getent hosts model-runner.docker.internal: "
             + ("does not resolve" if other.returncode == 2 else "resolves")),
        ]
        evidence = [text for _, text in facts]
        if all(ok for ok, _ in facts):
            return _pass(what, evidence)
        wrong = next(text for ok, text in facts if not ok)
        return _fail(f"Step 5: unexpected inside {name}: {wrong}",
                     f"check the isolation tier (labkit doctor; {lab.isolation})", evidence)

    return _guarded(what, probe)


def _allowed_request(lab: Lab, sandbox: str, path: re.Pattern[str], what: str, route: str,
                     fix: str, live_note: str) -> CheckResult:
    """An allowed, answered request from ``sandbox`` to the model port on ``path`` (live: the log row)."""
    if _live(lab):
        rows = _log_entries(lab, sandbox, blocked=False)
        if not rows:
            return _fail(f"{what}: sbx policy log {sandbox} shows no allowed request to {lab.endpoints.rule}", fix)
        return _pass(f"{what} ({live_note})", [_log_line(sandbox, rows[0])])
    records = _model_records(lab, sandbox, path)
    if not records:
        seen = _model_records(lab, sandbox, None, decision=None, status=None)
        evidence = [_record_line(seen[-1])] if seen else [f"audit: no request from {sandbox} to {lab.endpoints.rule}"]
        return _fail(f"{what}: no allowed {route} from {sandbox} answered HTTP 200", fix, evidence)
    return _pass(what, [_record_line(records[0])])


def reached_model_api(lab: Lab, name: str) -> CheckResult:
    """Step 5: the sandbox listed the models through the proxy (an allowed GET …/v1/models, HTTP 200)."""
    fix = f"sbx exec {name} curl -s {lab.endpoints.sandbox}/models"
    return _guarded("Step 5", lambda: _allowed_request(
        lab, name, MODELS_PATH, f"Step 5: sandbox {name} reached the model API through the proxy",
        "GET …/v1/models", fix, "sbx policy log has no paths: any allowed request to the model port counts"))


def chat_completion(lab: Lab, name: str) -> CheckResult:
    """Step 6: a chat completion crossed the boundary (an allowed POST …/chat/completions, HTTP 200)."""
    fix = f"sbx exec {name} curl -s {lab.endpoints.sandbox}/chat/completions -H 'Content-Type: application/json' -d …"
    return _guarded("Step 6", lambda: _allowed_request(
        lab, name, CHAT_PATH, f"Step 6: sandbox {name} ran a chat completion across the boundary",
        "POST …/chat/completions", fix,
        "sbx policy log has no paths: an allowed request to the model port is what it can show"))


def _sdk_script_facts(lab: Lab, script: Path) -> tuple[list[str], str]:
    """What the script shows (evidence) and what is wrong with it ('' when it is right)."""
    if not script.is_file():
        return [f"workspace: {_pretty_path(script)} does not exist"], "missing"
    text = script.read_text(errors="replace")
    evidence = [f"workspace: {script.name} exists"]
    if "OpenAI(" not in text or "openai" not in text:
        return evidence, "it does not create an OpenAI SDK client"
    wanted = f"{HOST_ALIAS}:{lab.endpoints.port}"
    if wanted not in text:
        return evidence, f"its base_url does not point at {wanted}"
    evidence.append(f"{script.name}: OpenAI(base_url=…{wanted}…)")
    return evidence, ""


def _after(when: datetime | None, since: float) -> bool:
    return when is not None and when.timestamp() >= since - 1.0  # a second of slack: log times are rounded


def sdk_client(lab: Lab, name: str, workspace: str | Path | None = None,
               script: str = "test_local.py") -> CheckResult:
    """Step 7: ``script`` in the workspace points the OpenAI SDK at the local endpoint, and a chat
    completion from the sandbox went through the proxy after it was written."""
    what = f"Step 7: {script} pointed the OpenAI SDK at {HOST_ALIAS}:{lab.endpoints.port}"

    def probe() -> CheckResult:
        folder = _workspace(lab, name, workspace)
        if folder is None:
            return _fail(f"Step 7: cannot find {name}'s workspace", "pass workspace= (the folder of `sbx create`)")
        path = folder / script
        evidence, problem = _sdk_script_facts(lab, path)
        run = f"sbx exec {name} python3 {script}"
        if problem == "missing":
            return _fail(f"Step 7: there is no {script} in {name}'s workspace",
                         f"write it (Step 7's cat > {script} <<'EOF' …), then: {run}", evidence)
        if problem:
            return _fail(f"Step 7: {script} exists but {problem}", f"compare it with Step 7's {script}", evidence)
        written = path.stat().st_mtime
        if _live(lab):
            rows = [e for e in _log_entries(lab, name, blocked=False) if _after(e.last_seen, written)]
            if not rows:
                return _fail(f"Step 7: sbx policy log {name} shows no allowed request since {script} was written",
                             run, evidence)
            return _pass(f"{what} (sbx policy log: a request to the model port after it was written)",
                         [*evidence, _log_line(name, rows[0])])
        records = [r for r in _model_records(lab, name, CHAT_PATH) if _after(r.when, written)]
        if not records:
            return _fail(f"Step 7: no chat completion from {name} since {script} was written", run, evidence)
        return _pass(f"{what} and its chat completion went through the proxy",
                     [*evidence, _record_line(records[0])])

    return _guarded("Step 7", probe)


def agent_ran(lab: Lab, name: str, output: str | Path, workspace: str | Path | None = None) -> CheckResult:
    """Step 8: the coding agent in ``name`` talked to the local model and left ``output`` in the workspace."""
    what = f"Step 8: the coding agent in {name} used the local model and wrote {Path(output).name}"

    def probe() -> CheckResult:
        folder = _workspace(lab, name, workspace)
        target = Path(output).expanduser()
        if not target.is_absolute():
            if folder is None:
                return _fail(f"Step 8: cannot find {name}'s workspace", "pass workspace= or an absolute output=")
            target = folder / target
        evidence = []
        if _live(lab):
            rows = _log_entries(lab, name, blocked=False)
            if not rows:
                return _fail(f"Step 8: sbx policy log {name} shows no allowed request to {lab.endpoints.rule}",
                             f"run the agent in {name} with OPENAI_BASE_URL={lab.endpoints.sandbox}")
            evidence.append(_log_line(name, rows[0]))
        else:
            records = _model_records(lab, name, AGENT_PATH)
            if not records:
                return _fail(f"Step 8: no model request from the agent in {name} was allowed and answered",
                             f"run the agent in {name} with OPENAI_BASE_URL={lab.endpoints.sandbox}")
            evidence.append(_record_line(records[0]))
        if not target.is_file() or target.stat().st_size == 0:
            return _fail(f"Step 8: the agent talked to the model but {target.name} is not in the workspace",
                         "run the agent again and read its output", evidence)
        evidence.append(f"workspace: {target.name} exists")
        return _pass(what, evidence)

    return _guarded("Step 8", probe)


def blocked_by_deny(lab: Lab, name: str) -> CheckResult:
    """Step 8, "try breaking it": a request from ``name`` to the model port was blocked by a deny rule."""
    what = f"Step 8: the deny rule blocked {name}'s requests to {lab.endpoints.rule}"
    fix = f"sbx policy deny network {lab.endpoints.rule}, then run the agent in {name} again"

    def probe() -> CheckResult:
        if _live(lab):
            rows = _log_entries(lab, name, blocked=True)
            denied = [e for e in rows if e.rule == "user-denied"] or rows
            if not denied:
                return _fail(f"Step 8: sbx policy log {name} shows no blocked request to {lab.endpoints.rule}", fix)
            return _pass(what, [_log_line(name, denied[0])])
        records = [r for r in _model_records(lab, name, decision="deny", status=None) if r.rule_label == "user-denied"]
        if not records:
            return _fail(f"Step 8: no request from {name} was blocked by a deny rule", fix)
        return _pass(what, [_record_line(records[0])])

    return _guarded("Step 8", probe)


# ------------------------------------------------------------------ notebook 09: the seed's checkpoint


@dataclass(frozen=True)
class Checkpoint:
    """The seed's five checkpoint items, each verified from evidence."""

    items: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items)

    @property
    def lines(self) -> list[str]:
        return [item.line for item in self.items]

    def __str__(self) -> str:
        head = "✓ Checkpoint: all five verified" if self.ok else \
            f"✗ Checkpoint: {sum(not i.ok for i in self.items)} of {len(self.items)} not verified yet"
        return "\n".join([head, *map(str, self.items)])

    __repr__ = __str__

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def _numbered(n: int, result: CheckResult, text: str) -> CheckResult:
    """Re-title a step's result as checkpoint item ``n`` (the fix stays the step's fix)."""
    mark = "✓" if result.ok else "✗"
    line = f"{mark} {n}. {text}" + (f" — fix: {result.fix}" if not result.ok and result.fix else "")
    return CheckResult(result.ok, line, result.evidence, result.fix)


def checkpoint(lab: Lab, sandbox: str = "dmr-test", agent_sandbox: str = "dmr-codex",
               workspace: str | Path | None = None, script: str = "test_local.py") -> Checkpoint:
    """The seed's checkpoint, item by item, from the audit records (embedded) or `sbx policy log` (live).

    ``sandbox`` is the shell sandbox of steps 2–7, ``agent_sandbox`` the coding agent's of step 8;
    both may already be removed: the audit log outlives them. ``workspace`` is where ``script`` was written.
    """
    port = lab.endpoints.port
    live = _live(lab)
    paths_note = " (sbx policy log: allowed requests to the model port; it records no paths)" if live else ""
    first = _guarded("item 1", lambda: _via_alias(lab, sandbox))
    chat = chat_completion(lab, sandbox)
    sdk = sdk_client(lab, sandbox, workspace, script)
    agent = _agent_item(lab, agent_sandbox)
    watched = _log_item(lab, agent_sandbox)
    return Checkpoint((
        _numbered(1, first, f"Reached DMR from inside the sandbox via {HOST_ALIAS}:{port}{paths_note}"),
        _numbered(2, chat, f"Ran a chat completion against a local model{paths_note}"),
        _numbered(3, sdk, "Pointed a Python OpenAI SDK client at the local endpoint"),
        _numbered(4, agent, "Pointed a coding agent at the local model via OPENAI_BASE_URL"),
        _numbered(5, watched, f"Watched the connections in sbx policy log {agent_sandbox}"),
    ))


def _via_alias(lab: Lab, name: str) -> CheckResult:
    """Item 1: an answered request from ``name`` addressed to host.docker.internal:PORT (live: the log row)."""
    fix = f"sbx exec {name} curl -s {lab.endpoints.sandbox}/models"
    if _live(lab):
        rows = _log_entries(lab, name, blocked=False)
        if not rows:
            return _fail(f"no allowed request from {name} to {lab.endpoints.rule}", fix)
        return _pass("reached", [_log_line(name, rows[0])])
    records = [r for r in _model_records(lab, name) if r.host == HOST_ALIAS]
    if not records:
        return _fail(f"no answered request from {name} to {HOST_ALIAS}:{lab.endpoints.port}", fix)
    return _pass("reached", [_record_line(records[0])])


def _agent_item(lab: Lab, name: str) -> CheckResult:
    """Item 4: the agent's requests reached the model port from its sandbox (where OPENAI_BASE_URL pointed)."""
    fix = f"Step 8: run the agent in {name} with OPENAI_BASE_URL={lab.endpoints.sandbox}"

    def probe() -> CheckResult:
        if _live(lab):
            rows = _log_entries(lab, name, blocked=False)
            if not rows:
                return _fail(f"no allowed request from {name}", fix)
            return _pass(f"{name}'s agent reached the model port", [_log_line(name, rows[0])])
        records = _model_records(lab, name, AGENT_PATH)
        if not records:
            return _fail(f"no answered model request from {name}", fix)
        return _pass(f"{name}'s agent reached the model", [_record_line(records[0])])

    return _guarded("item 4", probe)


def _log_item(lab: Lab, name: str) -> CheckResult:
    """Item 5: `sbx policy log N` (the aggregated view, both modes) shows the agent's allowed connections."""
    fix = f"sbx policy log {name}   (after Step 8's agent run)"

    def probe() -> CheckResult:
        rows = _log_entries(lab, name, blocked=False)
        if not rows:
            return _fail(f"sbx policy log {name} has no allowed {lab.endpoints.rule} entry", fix)
        return _pass("the policy log shows them", [_log_line(name, rows[0])])

    return _guarded("item 5", probe)
