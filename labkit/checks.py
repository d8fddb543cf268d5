"""Checkpoints verified from real evidence: one deterministic ✓/✗ line each, with the fix when ✗.

A checkpoint never trusts that a cell ran: it reads the state the step leaves behind — the
model store and API, `sbx ls`, the policy rules, a command run inside the sandbox, the
proxy's audit records, files in the workspace. Lines and evidence carry no times, ids,
counts or durations, so a re-run prints the same text (nbval compares it); a record cited
as evidence is the oldest that qualifies, so later traffic does not change it.

Embedded mode keeps one audit record per request (method, path, status); real sbx keeps
only `sbx policy log`, aggregated per host. Where a step needs per-request detail, live
mode checks what the log can show and the line says so.

The notebooks call the ``stepN_…`` functions (and ``agent_run``, ``agent_blocked``,
``checklist``, ``preflight``): each prints its result and returns it. The functions above
them are the building blocks; they return a result and print nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._core.runner import CommandFailed
from .records import PolicyLogEntry, PolicyRule, display_name
from .tools.errors import ToolError

if TYPE_CHECKING:
    from .lab import Lab

HOST_ALIAS = "host.docker.internal"
MODELS_PATH = re.compile(r"/v1/models/?$")
CHAT_PATH = re.compile(r"/chat/completions/?$")
# labkit's agent (chat completions) | Codex (Responses API) | Claude Code (Anthropic Messages)
AGENT_PATH = re.compile(r"/(chat/completions|responses|messages)/?$")


@dataclass(frozen=True)
class CheckResult:
    """One checkpoint: ``ok``, the deterministic line (✓/✗, with the fix when ✗), and what was looked at."""

    ok: bool
    line: str
    evidence: tuple[str, ...] = ()
    fix: str = ""
    printed: bool = field(default=False, compare=False, repr=False)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return "\n".join([self.line, *(f"    · {item}" for item in self.evidence)])

    def __repr__(self) -> str:
        return str(self)

    def show(self) -> CheckResult:
        """Print the line and its evidence; as a cell's last value it is then not shown twice."""
        print(self, flush=True)
        object.__setattr__(self, "printed", True)
        return self

    def _ipython_display_(self) -> None:
        """IPython shows the text (as printed output, like the check cells' other lines), once."""
        if self.printed:
            object.__setattr__(self, "printed", False)
            return
        print(self)


def passed(what: str, evidence: Iterable[str]) -> CheckResult:
    return CheckResult(True, f"✓ {what}", tuple(evidence))


def failed(what: str, fix: str, evidence: Iterable[str] = ()) -> CheckResult:
    line = f"✗ {what}" + (f" — fix: {fix}" if fix else "")
    return CheckResult(False, line, tuple(evidence), fix)


def _tool_failure(what: str, err: ToolError | CommandFailed) -> CheckResult:
    """A tool that cannot answer is a ✗ with its own fix, never a traceback."""
    if isinstance(err, ToolError):
        return failed(f"{what}: {err.message}", err.fix or "run `labkit doctor`")
    return failed(f"{what}: {err}", "run the command in a terminal to see why")


def _guarded(what: str, probe: Callable[[], CheckResult]) -> CheckResult:
    try:
        return probe()
    except (ToolError, CommandFailed) as err:
        return _tool_failure(what, err)


def is_live(lab: Lab) -> bool:
    return lab.resolution.sandboxes.kind == "live"


def _pretty_path(path: Path) -> str:
    """A path under the home folder as ``~/…`` (committed outputs must not show the machine's paths)."""
    try:
        return "~/" + str(path.resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------ evidence readers


def model_records(lab: Lab, sandbox: str | None, path: re.Pattern[str] | None = None,
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


def record_line(rec: Any) -> str:
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
    try:
        info = lab.sandbox(sandbox).info
    except ToolError:
        return None
    return Path(info.workspaces[0]) if info and info.workspaces else None


# ------------------------------------------------------------------ step checkpoints


def model_pulled(lab: Lab, model: str) -> CheckResult:
    """Step 1: ``model`` is in the local store (`docker model ls`) and the OpenAI API lists it."""
    what = f"Step 1: the model {model} is in the local store"

    def probe() -> CheckResult:
        wanted = display_name(model)
        local = next((m for m in lab.models() if wanted in {display_name(t) for t in m.tags}), None)
        if local is None:
            return failed(f"Step 1: {model} is not in the local model store", f"docker model pull {model}",
                         ["docker model ls: not listed"])
        ids = [i for i in lab.model_ids() if display_name(i) == wanted]
        evidence = [f"docker model ls: {local.name} ({local.parameters}, {local.quantization}, {local.size})"]
        if not ids:
            return failed(f"Step 1: {model} is pulled but {lab.endpoints.host}/models does not list it",
                         "check the runner: docker model status", evidence)
        evidence.append(f"GET /engines/llama.cpp/v1/models: id {ids[0]}")
        return passed(f"{what} and the model API serves it as {ids[0]}", evidence)

    return _guarded(what, probe)


def sandbox_listed(lab: Lab, name: str) -> CheckResult:
    """Step 2: `sbx ls` lists the sandbox."""
    what = f"Step 2: sandbox {name} exists"

    def probe() -> CheckResult:
        info = lab.sandbox(name).info
        if info is None:
            return failed(f"Step 2: `sbx ls` does not list a sandbox named {name}",
                         f"sbx create --name {name} shell .", ["sbx ls: not listed"])
        return passed(f"{what} (agent {info.agent})", [f"sbx ls: {info.name} {info.agent} {info.status}"])

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
                return failed(f"{pre}a deny rule for {resource} is in force (deny beats allow)",
                             f"sbx policy rm network{scope} --resource {resource}", evidence)
            if not allows:
                return failed(f"{pre}no rule allows {resource}: the default deny applies",
                             f"sbx policy allow network{scope} {resource}", evidence)
        elif not denies:
            return failed(f"{pre}no deny rule names {resource}", f"sbx policy deny network{scope} {resource}", evidence)
        return passed(what, evidence)

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
            return passed(what, evidence)
        fix = f"sbx policy {'allow' if allowed else 'deny'} network {target}"
        return failed(f"sbx policy check network {target} says {'Allowed' if got else 'Denied'}", fix, evidence)

    return _guarded(what, probe)


def inside_sandbox(lab: Lab, name: str) -> CheckResult:
    """Step 4: a command really runs inside: `hostname` there answers the sandbox's name."""
    what = f"Step 4: commands run inside sandbox {name}"

    def probe() -> CheckResult:
        box = lab.sandbox(name)
        if not box.exists:
            return failed(f"Step 4: there is no sandbox named {name}", f"sbx create --name {name} shell .")
        result = box.exec("hostname", echo=False)
        got = result.stdout.strip()
        evidence = [f"sbx exec {name} hostname: {got or result.error or f'exit {result.returncode}'}"]
        if result.ok and lab.isolation.startswith("process"):
            # no UTS namespace in the process tier: the command ran, but the hostname is the host's
            return passed(f"{what} (process tier: own hostname not enforced)", evidence)
        if not result.ok or got != name:
            return failed(f"Step 4: hostname inside {name} is not {name}", f"sbx exec {name} hostname", evidence)
        return passed(f"{what} (hostname = {name})", evidence)

    return _guarded(what, probe)


def networking_facts(lab: Lab, name: str) -> CheckResult:
    """Step 5's three facts, each run inside: localhost is the sandbox's own (refused),
    host.docker.internal resolves, model-runner.docker.internal does not."""
    what = f"Step 5: the three networking facts hold inside {name}"
    port = lab.endpoints.port

    def probe() -> CheckResult:
        box = lab.sandbox(name)
        if not box.exists:
            return failed(f"Step 5: there is no sandbox named {name}", f"sbx create --name {name} shell .")
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
            return passed(what, evidence)
        wrong = next(text for ok, text in facts if not ok)
        return failed(f"Step 5: unexpected inside {name}: {wrong}",
                     f"check the isolation tier (labkit doctor; {lab.isolation})", evidence)

    return _guarded(what, probe)


def _crossing(lab: Lab, sandbox: str, path: re.Pattern[str] | None = None, *, blocked: bool = False,
              since: float | None = None, via_alias: bool = False) -> str | None:
    """Evidence that a request from ``sandbox`` to the model port went through the proxy, allowed and
    answered (or, with ``blocked``, refused by a deny rule): the oldest such audit record (embedded),
    else the `sbx policy log` row (live, where ``path`` cannot be checked). None when there is none."""
    if is_live(lab):
        rows = [e for e in _log_entries(lab, sandbox, blocked)
                if since is None or _after(e.last_seen, since, slack=1.0)]
        if blocked:
            rows = [e for e in rows if e.rule == "user-denied"] or rows
        return _log_line(sandbox, rows[0]) if rows else None
    if blocked:
        records = [r for r in model_records(lab, sandbox, path, decision="deny", status=None)
                   if r.rule_label == "user-denied"]
    else:
        records = model_records(lab, sandbox, path)
    records = [r for r in records
               if (since is None or _after(r.when, since)) and (not via_alias or r.host == HOST_ALIAS)]
    return record_line(records[0]) if records else None


def _no_crossing(lab: Lab, sandbox: str, route: str) -> tuple[str, list[str]]:
    """Why there is no evidence, and the latest request there was (so the ✗ shows what went wrong)."""
    if is_live(lab):
        return f"sbx policy log {sandbox} shows no allowed request to {lab.endpoints.rule}", []
    seen = model_records(lab, sandbox, None, decision=None, status=None)
    last = [record_line(seen[-1])] if seen else [f"audit: no request from {sandbox} to {lab.endpoints.rule}"]
    return f"no allowed {route} from {sandbox} answered HTTP 200", last


def _allowed_request(lab: Lab, sandbox: str, path: re.Pattern[str], step: str, what: str, route: str,
                     fix: str, live_note: str) -> CheckResult:
    """An allowed, answered request from ``sandbox`` to the model port on ``path`` (live: the log row)."""
    evidence = _crossing(lab, sandbox, path)
    if evidence is None:
        reason, last = _no_crossing(lab, sandbox, route)
        return failed(f"{step}: {reason}", fix, last)
    return passed(f"{step}: {what}" + (f" ({live_note})" if is_live(lab) else ""), [evidence])


def reached_model_api(lab: Lab, name: str) -> CheckResult:
    """Step 5: the sandbox listed the models through the proxy (an allowed GET …/v1/models, HTTP 200)."""
    fix = f"sbx exec {name} curl -s {lab.endpoints.sandbox}/models"
    return _guarded("Step 5", lambda: _allowed_request(
        lab, name, MODELS_PATH, "Step 5", f"sandbox {name} reached the model API through the proxy",
        "GET …/v1/models", fix, "sbx policy log has no paths: any allowed request to the model port counts"))


def chat_completion(lab: Lab, name: str) -> CheckResult:
    """Step 6: a chat completion crossed the boundary (an allowed POST …/chat/completions, HTTP 200)."""
    fix = f"sbx exec {name} curl -s {lab.endpoints.sandbox}/chat/completions -H 'Content-Type: application/json' -d …"
    return _guarded("Step 6", lambda: _allowed_request(
        lab, name, CHAT_PATH, "Step 6", f"sandbox {name} ran a chat completion across the boundary",
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


def _after(when: datetime | None, since: float, slack: float = 0.05) -> bool:
    """``when`` is not before ``since`` (audit records carry milliseconds; sbx's log rounds to seconds)."""
    return when is not None and when.timestamp() >= since - slack


def sdk_client(lab: Lab, name: str, workspace: str | Path | None = None,
               script: str = "test_local.py") -> CheckResult:
    """Step 7: ``script`` in the workspace points the OpenAI SDK at the local endpoint, and a chat
    completion from the sandbox went through the proxy after it was written."""
    what = f"Step 7: {script} pointed the OpenAI SDK at {HOST_ALIAS}:{lab.endpoints.port}"

    def probe() -> CheckResult:
        folder = _workspace(lab, name, workspace)
        if folder is None:
            return failed(f"Step 7: cannot find {name}'s workspace", "pass workspace= (the folder of `sbx create`)")
        path = folder / script
        evidence, problem = _sdk_script_facts(lab, path)
        run = f"sbx exec {name} python3 {script}"
        if problem == "missing":
            return failed(f"Step 7: there is no {script} in {name}'s workspace",
                         f"write it (Step 7's cat > {script} <<'EOF' …), then: {run}", evidence)
        if problem:
            return failed(f"Step 7: {script} exists but {problem}", f"compare it with Step 7's {script}", evidence)
        crossed = _crossing(lab, name, CHAT_PATH, since=path.stat().st_mtime)
        if crossed is None:
            return failed(f"Step 7: no chat completion from {name} went through the proxy since {script} was written",
                         run, evidence)
        note = " (sbx policy log: a request to the model port after it was written)" if is_live(lab) else \
            " and its chat completion went through the proxy"
        return passed(what + note, [*evidence, crossed])

    return _guarded("Step 7", probe)


def agent_ran(lab: Lab, name: str, output: str | Path, workspace: str | Path | None = None) -> CheckResult:
    """Step 8: the coding agent in ``name`` talked to the local model and left ``output`` in the workspace."""
    what = f"Step 8: the coding agent in {name} used the local model and wrote {Path(output).name}"

    def probe() -> CheckResult:
        crossed = _crossing(lab, name, AGENT_PATH)
        if crossed is None:
            return failed(f"Step 8: {_no_crossing(lab, name, 'model request')[0]}",
                         f"run the agent in {name} with OPENAI_BASE_URL={lab.endpoints.sandbox}")
        evidence = [crossed]
        folder = _workspace(lab, name, workspace)
        target = Path(output).expanduser()
        if not target.is_absolute():
            if folder is None:
                return failed(f"Step 8: cannot find {name}'s workspace", "pass workspace= or an absolute output=",
                             evidence)
            target = folder / target
        if not target.is_file() or target.stat().st_size == 0:
            return failed(f"Step 8: the agent talked to the model but {target.name} is not in the workspace",
                         "run the agent again and read its output", evidence)
        evidence.append(f"workspace: {target.name} exists")
        return passed(what, evidence)

    return _guarded("Step 8", probe)


def blocked_by_deny(lab: Lab, name: str) -> CheckResult:
    """Step 8, "try breaking it": a request from ``name`` to the model port was blocked by a deny rule."""
    what = f"Step 8: the deny rule blocked {name}'s requests to {lab.endpoints.rule}"
    fix = f"sbx policy deny network {lab.endpoints.rule}, then run the agent in {name} again"

    def probe() -> CheckResult:
        crossed = _crossing(lab, name, blocked=True)
        if crossed is None:
            return failed(f"Step 8: no request from {name} to {lab.endpoints.rule} was blocked by a deny rule", fix)
        return passed(what, [crossed])

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

    def summary(self) -> str:
        """One deterministic line: all verified, or how many are not yet."""
        if self.ok:
            return f"✓ Checkpoint: all {len(self.items)} verified"
        return f"✗ Checkpoint: {sum(not i.ok for i in self.items)} of {len(self.items)} not verified yet"

    def __str__(self) -> str:
        return "\n".join([self.summary(), *map(str, self.items)])

    __repr__ = __str__

    def _ipython_display_(self) -> None:
        print(self)


def _numbered(n: int, result: CheckResult, text: str) -> CheckResult:
    """Re-title a step's result as checkpoint item ``n``; a ✗ keeps its reason as evidence, and its fix."""
    if result.ok:
        return CheckResult(True, f"✓ {n}. {text}", result.evidence)
    reason = result.line.removeprefix("✗ ").split(" — fix: ")[0]
    line = f"✗ {n}. {text}" + (f" — fix: {result.fix}" if result.fix else "")
    return CheckResult(False, line, (f"not verified: {reason}", *result.evidence), result.fix)


def checkpoint(lab: Lab, sandbox: str = "dmr-test", agent_sandbox: str = "dmr-claude",
               workspace: str | Path | None = None, script: str = "test_local.py") -> Checkpoint:
    """The seed's checkpoint, item by item, from the audit records (embedded) or `sbx policy log` (live).

    ``sandbox`` is the shell sandbox of steps 2–7, ``agent_sandbox`` the coding agent's of step 8;
    both may already be removed: the audit log outlives them. ``workspace`` is where ``script`` was written.
    """
    port = lab.endpoints.port
    live = is_live(lab)
    workspace = workspace or _workspace(lab, sandbox, None) or _workspace(lab, agent_sandbox, None)
    paths_note = " (sbx policy log: allowed requests to the model port; it records no paths)" if live else ""
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
        # the seed says "via OPENAI_BASE_URL"; current agents need their generated configuration (Step 8)
        _numbered(4, agent, "Pointed a coding agent at the local model"),
        _numbered(5, watched, f"Watched the connections in sbx policy log {agent_sandbox}"),
    ))


def _item(lab: Lab, name: str, what: str, fix: str, path: re.Pattern[str] | None = None,
          via_alias: bool = False) -> CheckResult:
    """A checkpoint item that needs one allowed, answered request from ``name`` (``what`` names it)."""

    def probe() -> CheckResult:
        crossed = _crossing(lab, name, path, via_alias=via_alias)
        if crossed:
            return passed(what, [crossed])
        reason, last = _no_crossing(lab, name, "request")
        return failed(reason, fix, last)

    return _guarded(what, probe)


def _watched(lab: Lab, name: str) -> CheckResult:
    """Item 5: `sbx policy log N` (the aggregated view, both modes) shows the agent's allowed connections."""

    def probe() -> CheckResult:
        rows = _log_entries(lab, name, blocked=False)
        if not rows:
            return failed(f"sbx policy log {name} has no allowed {lab.endpoints.rule} entry",
                         f"sbx policy log {name}   (after Step 8's agent run)")
        return passed("the policy log shows them", [_log_line(name, rows[0])])

    return _guarded("item 5", probe)


# ------------------------------------------------------------------ the notebooks' checkpoint cells


def _all_of(step: str, what: str, parts: Iterable[CheckResult]) -> CheckResult:
    """One line for a step made of several checks: ✓ with all their evidence, else the first ✗."""
    results = list(parts)
    failed = next((r for r in results if not r.ok), None)
    if failed is not None:
        return failed
    return passed(f"{step}: {what}", [e for r in results for e in r.evidence])


def _ran(run: Any, step: str, what: str, fix: str, codes: tuple[int, ...] = (0,)) -> CheckResult:
    """A command the notebook ran (a ``shell.Result``): it finished with one of ``codes`` and printed something."""
    code, out = getattr(run, "returncode", None), (getattr(run, "stdout", "") or "").strip()
    if getattr(run, "error", None):
        return failed(f"{step}: {what} did not run: {run.error}", fix)
    if code not in codes:
        said = next((ln.strip() for ln in reversed((getattr(run, "output", "") or "").splitlines()) if ln.strip()), "")
        return failed(f"{step}: {what} failed (exit {code}{': ' + said[:120] if said else ''})", fix)
    if not out:
        return failed(f"{step}: {what} printed nothing (exit {code})", fix)
    return passed(f"{step}: {what}", [f"{what}: exit {code}, printed output"] if codes == (0,) else
                 [f"{what}: finished (exit {' or '.join(map(str, codes))})"])


def step1_models(lab: Lab, model: str, *, echo: bool = True) -> CheckResult:
    """Notebook 01: the model is pulled and served (`docker model ls`, `GET …/v1/models`)."""
    result = model_pulled(lab, model)
    return result.show() if echo else result


def step2_sandbox(lab: Lab, name: str, workdir: str | Path | None = None, *, echo: bool = True) -> CheckResult:
    """Notebook 02: `sbx ls` lists the sandbox, with ``workdir`` as its workspace when given."""
    result = sandbox_listed(lab, name)
    if result.ok and workdir is not None:
        mounted = _workspace(lab, name, None)
        wanted = Path(workdir).expanduser()
        if mounted is None or mounted.resolve() != wanted.resolve():
            result = failed(f"Step 2: {name}'s workspace is {mounted and _pretty_path(mounted)}, "
                           f"not {_pretty_path(wanted)}",
                           f"sbx rm -f {name}, then: cd {workdir} && sbx create --name {name} shell .",
                           result.evidence)
        else:
            result = CheckResult(True, result.line, (*result.evidence, f"workspace: {_pretty_path(wanted)} "
                                                     "(mounted at the same path inside)"))
    return result.show() if echo else result


def step3_policy(lab: Lab, *, echo: bool = True) -> CheckResult:
    """Notebook 03: the allow rule for the model port is in force (and no deny overrides it)."""
    result = model_port_allowed(lab)
    return result.show() if echo else result


def step4_inside(lab: Lab, name: str, *, echo: bool = True) -> CheckResult:
    """Notebook 04: a command runs inside (hostname there = the sandbox's name)."""
    result = inside_sandbox(lab, name)
    return result.show() if echo else result


def step5_network(lab: Lab, name: str, *, echo: bool = True) -> CheckResult:
    """Notebook 05: the models were listed through the proxy, and the three networking facts hold.

    The process tier (no namespaces) shares the host's loopback and DNS: there the facts are
    not required, and the evidence says so.
    """
    parts = [reached_model_api(lab, name)]
    if lab.isolation.startswith("process"):
        parts.append(passed("", ["networking facts: not enforced in the process tier (no network namespace)"]))
    else:
        parts.append(networking_facts(lab, name))
    result = _all_of("Step 5", f"{name} reached the model API through the proxy; localhost is its own; "
                     f"only {HOST_ALIAS} reaches the host", parts)
    return result.show() if echo else result


def _reply_facts(answer: Any) -> CheckResult:
    """A chat completion as the notebook got it (JSON dict, its text, or the `sbx exec` result)."""
    import json

    if hasattr(answer, "stdout"):
        answer = answer.stdout
    if isinstance(answer, str):
        try:
            answer = json.loads(answer[answer.find("{"):]) if "{" in answer else None
        except ValueError:
            answer = None
    if not isinstance(answer, dict):
        return failed("Step 6: the answer is not a chat completion's JSON",
                     "run the curl cell again and read its output")
    choice = (answer.get("choices") or [{}])[0]
    content = ((choice.get("message") or {}).get("content") or "").strip()
    if answer.get("object") != "chat.completion" or not content:
        return failed("Step 6: the answer has no choices[0].message.content", "check the model id with docker model ls")
    return passed("", ["answer: a chat.completion with text in choices[0].message.content"])


def step6_chat(lab: Lab, name: str, answer: Any = None, *, echo: bool = True) -> CheckResult:
    """Notebook 06: a chat completion crossed the boundary (audit), and the answer has OpenAI's shape."""
    parts = [chat_completion(lab, name)] + ([_reply_facts(answer)] if answer is not None else [])
    result = _all_of("Step 6", f"a chat completion from {name} crossed the boundary and came back", parts)
    return result.show() if echo else result


def step7_sdk(lab: Lab, name: str, workdir: str | Path | None = None, run: Any = None, *,
              script: str = "test_local.py", echo: bool = True) -> CheckResult:
    """Notebook 07: ``script`` points the OpenAI SDK at the local endpoint, it ran, its request was audited."""
    parts = [sdk_client(lab, name, workdir, script)]
    if run is not None:
        parts.append(_ran(run, "Step 7", f"python3 {script}", f"sbx exec {name} python3 {script}"))
    result = _all_of("Step 7", f"{script} used the OpenAI SDK against the local model, through the proxy", parts)
    return result.show() if echo else result


def _agent_reached(lab: Lab, name: str) -> CheckResult:
    fix = f"run the agent in {name} with its generated configuration (notebook 08)"

    def probe() -> CheckResult:
        crossed = _crossing(lab, name, AGENT_PATH)
        if crossed is None:
            reason, last = _no_crossing(lab, name, "model request")
            return failed(f"Step 8: {reason}", fix, last)
        return passed("", [crossed])

    return _guarded("Step 8", probe)


def agent_run(lab: Lab, name: str, run: Any = None, *, echo: bool = True) -> CheckResult:
    """Notebook 08: the agent's requests reached the local model through the proxy.

    Exit 0 (its program ran) and 1 (the small model's program never worked) both mean the
    agent talked to the model; what the program printed is the learner's to judge.
    """
    parts = [_agent_reached(lab, name)]
    if run is not None and not is_live(lab):
        # With a 135M model an agent may finish (exit 0), give up (exit 1) or be stopped at the notebook's
        # bound: none of it says anything about the wiring, which the audit record above shows.
        stopped = "timed out" in (getattr(run, "error", "") or "")
        ran = (passed("", ["the agent: ran (exit 0 or 1, or stopped at the notebook's time bound)"])
               if stopped or getattr(run, "returncode", None) in (0, 1) else
               _ran(run, "Step 8", "the agent", "read the agent's output above", codes=(0, 1)))
        parts.append(ran)
    elif run is not None:
        parts.append(_ran(run, "Step 8", "the agent", "read the agent's output above"))
    result = _all_of("Step 8", f"the agent in {name} used the local model through the proxy", parts)
    return result.show() if echo else result


def agent_blocked(lab: Lab, name: str, blocked: Any = None, *, echo: bool = True) -> CheckResult:
    """Notebook 08, "try breaking it": the agent failed, and the proxy blocked its requests by the deny rule."""
    parts = [blocked_by_deny(lab, name)]
    if blocked is not None:
        code = getattr(blocked, "returncode", 0)
        parts.append(passed("", [f"the agent failed (exit {code}): it could not reach the model"]) if code else
                     failed("Step 8: the agent still succeeded under the deny rule",
                           f"sbx policy ls: is the deny rule for {lab.endpoints.rule} there?"))
    result = _all_of("Step 8", f"the deny rule cut the agent in {name} off from the model", parts)
    return result.show() if echo else result


def agent_answered(lab: Lab, name: str, *, echo: bool = True) -> CheckResult:
    """Notebook 08: what the model server said to the agent's requests, from the proxy's records.

    A request can cross the boundary and still be refused by the model server: Docker Model
    Runner after 1.2.6 answers Codex's `include` field with HTTP 400. This check passes when the
    agent's requests reached the server and says what it answered (embedded: per status).
    """
    def probe() -> CheckResult:
        if is_live(lab):
            rows = [e for e in _log_entries(lab, name, False) if _is_model_port(e, lab.port)]
            if not rows:
                return failed(f"Step 8: sbx policy log {name} shows no request to {lab.endpoints.rule}",
                              f"run the agent in {name} (the cell above)")
            return passed(f"Step 8: the agent in {name} reached the model port (sbx's log has no HTTP status: "
                          "the agent's own output above says whether the model answered)", [_log_line(name, rows[0])])
        records = model_records(lab, name, AGENT_PATH, status=None)
        if not records:
            reason, last = _no_crossing(lab, name, "model request")
            return failed(f"Step 8: {reason}", f"run the agent in {name} (the cell above)", last)
        statuses = sorted({r.status for r in records})
        refused = [r for r in records if r.status >= 400]
        what = (f"the agent in {name} reached the model server: {len(records)} request(s), "
                f"HTTP {', '.join(map(str, statuses))}")
        if refused:
            what += " (the model server refused some: see its request log)"
        return passed(f"Step 8: {what}", [record_line(r) for r in records[-3:]])

    result = _guarded("Step 8", probe)
    return result.show() if echo else result


def only_model_port(lab: Lab, name: str, *, echo: bool = True) -> CheckResult:
    """Notebook 08: every destination the agent in ``name`` tried, and that only the model port was reached."""
    def probe() -> CheckResult:
        target = lab.endpoints.rule
        if is_live(lab):
            rows = lab.audit.log(name)
            reached = any(not e.blocked and _is_model_port(e, lab.port) for e in rows)
            others = sorted({e.host for e in rows if not e.blocked and not _is_model_port(e, lab.port)})
            lines = [_log_line(name, e) for e in rows]
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
                          f"deny them: sbx policy deny network {','.join(others)}", lines)
        return passed(f"Step 8: the agent in {name} reached only the model port, {target}", lines)

    result = _guarded("Step 8", probe)
    return result.show() if echo else result


def step8_agent(lab: Lab, name: str, *, echo: bool = True) -> CheckResult:
    """Notebook 08: the agent used the model, a deny rule blocked it, and the allow rule is in force again."""
    restored = rule_in_force(lab, "allow", step="Step 8")
    parts = [_agent_reached(lab, name), blocked_by_deny(lab, name), restored]
    result = _all_of("Step 8", f"the agent in {name} used the local model, a deny rule blocked it, "
                     "access is restored", parts)
    return result.show() if echo else result


def checklist(lab: Lab, sandbox: str = "dmr-test", agent_sandbox: str = "dmr-claude",
              workspace: str | Path | None = None) -> Any:
    """Notebook 09: the seed's five checkpoint items as a widget (``.summary()`` is one deterministic line)."""
    from .widgets import Checklist

    return Checklist(lab, sandbox=sandbox, agent_sandbox=agent_sandbox, workspace=workspace)


PREFLIGHT_LABELS = {
    "python": "Python 3.11 or newer", "packages": "the course's Python packages import",
    "model": "the shipped model file", "llama": "llama.cpp loads the model",
    "bwrap": "bubblewrap (sandbox namespaces)", "socat": "socat (sandbox proxy relay)",
    "namespaces": "network namespaces (isolated sandboxes)", "sbx": "Docker Sandboxes (sbx)",
    "docker-model": "docker model CLI", "dmr": "Docker Model Runner answers", "port": "the model port",
}


def preflight(lab: Lab, *, echo: bool = True) -> list[CheckResult]:
    """Notebook 00: `labkit doctor`'s checks that this mode needs, one deterministic line each."""
    from .commands import doctor

    report = doctor.diagnose(lab.resolution.requested)
    needed = doctor.needed_parts(lab.resolution) | (
        {"embedded-sandbox"} if lab.resolution.sandboxes.kind == "embedded" else set())
    results = []
    for check in report.checks:
        if not set(check.needed_by) & needed:
            continue
        label = PREFLIGHT_LABELS.get(check.key, check.key)
        results.append(passed(label, []) if check.ok else failed(f"{label}: {check.detail}", check.fix))
    if echo:
        for result in results:
            result.show()
    return results
