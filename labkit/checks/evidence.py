"""Evidence readers: the proxy's audit records, `sbx policy log` rows and workspaces, as the checks cite them.

They return records and lines, never a verdict. A record cited as evidence is the oldest that
qualifies, so later traffic does not change a line; lines carry no times, ids, counts or
durations, so a re-run prints the same text (nbval compares it).

Embedded mode keeps one audit record per request (method, path, status); real sbx keeps only
`sbx policy log`, aggregated per host. Where a step needs per-request detail, live mode reads
what the log can show.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import LabError
from ..records import PolicyLogEntry, RuleDecision, rule_text

if TYPE_CHECKING:
    from ..lab import Lab
    from ..sbx.audit import AuditRecord

HOST_ALIAS = "host.docker.internal"
MODELS_PATH = re.compile(r"/v1/models/?$")
CHAT_PATH = re.compile(r"/chat/completions/?$")
# labkit's agent (chat completions) | Codex (Responses API) | Claude Code (Anthropic Messages)
AGENT_PATH = re.compile(r"/(chat/completions|responses|messages)/?$")


def is_live(lab: Lab) -> bool:
    return lab.resolution.sandboxes.kind == "live"


def pretty_path(path: Path) -> str:
    """A path under the home folder as ``~/…`` (committed outputs must not show the machine's paths)."""
    try:
        return "~/" + str(path.resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


def model_records(lab: Lab, sandbox: str | None, path: re.Pattern[str] | None = None,
                  decision: RuleDecision | None = "allow", status: int | None = 200) -> list[AuditRecord]:
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


def record_line(rec: AuditRecord) -> str:
    """One record as evidence: what, from where, to where, decided by which rule, with what status."""
    path = urlsplit(rec.url).path if "://" in rec.url else rec.url
    verdict = "allowed" if rec.decision == "allow" else "blocked"
    return (f"audit record: {rec.method} {path} from sandbox {rec.sandbox} via {rec.host}:{rec.port} → "
            f"{verdict} by '{rule_text(rec.rule)}', HTTP {rec.status}")


def is_model_port(entry: PolicyLogEntry, port: int) -> bool:
    host, _, entry_port = entry.host.rpartition(":")
    return entry_port == str(port) and host.strip("[]") in ("localhost", HOST_ALIAS, "127.0.0.1", "::1")


def log_entries(lab: Lab, sandbox: str, blocked: bool) -> list[PolicyLogEntry]:
    """`sbx policy log SANDBOX` rows for the model port (both modes)."""
    return [e for e in lab.audit.log(sandbox) if e.blocked == blocked and is_model_port(e, lab.endpoints.port)]


def log_line(sandbox: str, entry: PolicyLogEntry) -> str:
    state = "blocked" if entry.blocked else "allowed"
    return f"sbx policy log {sandbox}: {state} {entry.host} ({entry.rule}, {entry.proxy} proxy)"


def workspace_of(lab: Lab, sandbox: str, workspace: str | Path | None) -> Path | None:
    """The folder mounted in the sandbox (same path inside and out), or the one given."""
    if workspace is not None:
        return Path(workspace).expanduser()
    try:
        info = lab.sandbox(sandbox).info
    except LabError:
        return None
    return Path(info.workspaces[0]) if info and info.workspaces else None


def after(when: datetime | None, since: float, slack: float = 0.05) -> bool:
    """``when`` is not before ``since`` (audit records carry milliseconds; sbx's log rounds to seconds)."""
    return when is not None and when.timestamp() >= since - slack


def crossing(lab: Lab, sandbox: str, path: re.Pattern[str] | None = None, *, blocked: bool = False,
             since: float | None = None, via_alias: bool = False) -> str | None:
    """Evidence that a request from ``sandbox`` to the model port went through the proxy, allowed and
    answered (or, with ``blocked``, refused by a deny rule): the oldest such audit record (embedded),
    else the `sbx policy log` row (live, where ``path`` cannot be checked). None when there is none."""
    if is_live(lab):
        rows = [e for e in log_entries(lab, sandbox, blocked)
                if since is None or after(e.last_seen, since, slack=1.0)]
        if blocked:
            rows = [e for e in rows if e.rule == "user-denied"] or rows
        return log_line(sandbox, rows[0]) if rows else None
    if blocked:
        records = [r for r in model_records(lab, sandbox, path, decision="deny", status=None)
                   if r.rule_label == "user-denied"]
    else:
        records = model_records(lab, sandbox, path)
    records = [r for r in records
               if (since is None or after(r.when, since)) and (not via_alias or r.host == HOST_ALIAS)]
    return record_line(records[0]) if records else None


def no_crossing(lab: Lab, sandbox: str, route: str) -> tuple[str, list[str]]:
    """Why there is no evidence, and the latest request there was (so the ✗ shows what went wrong)."""
    if is_live(lab):
        return f"sbx policy log {sandbox} shows no allowed request to {lab.endpoints.rule}", []
    seen = model_records(lab, sandbox, None, decision=None, status=None)
    last = [record_line(seen[-1])] if seen else [f"audit: no request from {sandbox} to {lab.endpoints.rule}"]
    return f"no allowed {route} from {sandbox} answered HTTP 200", last
