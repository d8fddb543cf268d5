"""Parse what `sbx` prints, in every documented version, into labkit's records (pure, no I/O).

Variants (docs/sbx-dmr-facts.md, Part 1):
* `sbx ls`: table `SANDBOX AGENT STATUS PORTS WORKSPACE`, `--json` (``ports`` absent when
  none), `No sandboxes found.`.
* `sbx policy ls`: v0.23 `NAME TYPE DECISION RESOURCES` (blank line between rules), the older
  docs' `NAME TYPE ORIGIN DECISION STATUS RESOURCES`, v0.35+ `--wide` and `--json`. The v0.35+
  default summary (`POLICY SOURCE APPLIES TO SUMMARY`) has no rules in it: it is refused.
* `sbx policy log`: sections in either order, with or without REASON, `--json`,
  `No policy log entries found`.
* `Starting sandboxd daemon...` before any output, and the known error texts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import fixes
from ..errors import ToolError
from ..records import PolicyLogEntry, PolicyRule, SandboxInfo
from ._table import columns, read_row, read_table, split_list

DAEMON_START = "Starting sandboxd daemon"
NO_SANDBOXES = "No sandboxes found."
NO_LOG_ENTRIES = "No policy log entries found"
UNINITIALISED = "global network policy has not been initialized"


@dataclass(frozen=True, order=True)
class SbxVersion:
    """sbx's version; an unparseable one counts as the newest (its syntax is the documented one)."""

    major: int
    minor: int
    patch: int
    known: bool = field(default=True, compare=False)
    raw: str = field(default="", compare=False)

    def at_least(self, major: int, minor: int, patch: int = 0) -> bool:
        return not self.known or (self.major, self.minor, self.patch) >= (major, minor, patch)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" if self.known else (self.raw or "unknown")


def parse_version(text: str) -> SbxVersion:
    """The first ``[v]X.Y.Z`` in `sbx version`'s output (its exact wording is not documented)."""
    text = strip_noise(text)
    m = re.search(r"\bv?(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        return SbxVersion(999, 0, 0, known=False, raw=text.strip()[:60])
    return SbxVersion(int(m[1]), int(m[2]), int(m[3]), raw=text.strip()[:60])


def strip_noise(text: str) -> str:
    """Drop the auto-start line sbx prints before a command's own output."""
    return "\n".join(line for line in text.splitlines() if not line.startswith(DAEMON_START))


def json_or_none(text: str) -> Any:
    body = text.strip()
    if not body.startswith(("{", "[")):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _header_index(lines: list[str], first_column: str) -> int:
    for i, line in enumerate(lines):
        if line.split() and line.split()[0] == first_column:
            return i
    return -1


# ---------------------------------------------------------------- sbx ls


def parse_ls(text: str) -> list[SandboxInfo]:
    """`sbx ls` in any shape: `--json`, the table, or `No sandboxes found.`."""
    text = strip_noise(text)
    data = json_or_none(text)
    if data is not None:
        return parse_ls_json(data)
    if not text.strip() or text.strip() == NO_SANDBOXES:
        return []
    return parse_ls_table(text)


def parse_ls_json(data: Any) -> list[SandboxInfo]:
    if isinstance(data, str):
        data = json.loads(data)
    items = (data.get("sandboxes") or []) if isinstance(data, dict) else (data or [])
    return [
        SandboxInfo(
            name=item["name"],
            agent=item.get("agent", ""),
            status=item.get("status", ""),
            workspaces=tuple(item.get("workspaces") or ()),
            ports=tuple(_port(p) for p in item.get("ports") or ()),  # the key is absent when there are none
        )
        for item in items
    ]


def _port(p: dict[str, Any]) -> str:
    """A port as the table prints it: ``127.0.0.1:8080->3000/tcp``."""
    return f"{p.get('host_ip', '127.0.0.1')}:{p.get('host_port')}->{p.get('sandbox_port')}/{p.get('protocol', 'tcp')}"


def parse_ls_table(text: str) -> list[SandboxInfo]:
    lines = strip_noise(text).splitlines()
    at = _header_index(lines, "SANDBOX")
    if at < 0:
        raise ValueError(f"not an `sbx ls` table: {text.strip()[:80]!r}")
    return [
        SandboxInfo(
            name=row["SANDBOX"],
            agent=row.get("AGENT", ""),
            status=row.get("STATUS", ""),
            workspaces=tuple(split_list(row.get("WORKSPACE", ""))),
            ports=tuple(split_list(row.get("PORTS", ""))),
        )
        for row in read_table(lines, at)
    ]


# ---------------------------------------------------------------- sbx policy ls


def parse_policy_rules(text: str) -> list[PolicyRule]:
    """`sbx policy ls` as network rules: `--json`, `--wide`, or the pre-v0.35 tables."""
    text = strip_noise(text)
    data = json_or_none(text)
    return parse_policy_json(data) if data is not None else parse_policy_table(text)


def _rule(rule_id: str, name: str, decision: str, resources: list[str], applies_to: str, origin: str) -> PolicyRule:
    """One rule, spelled the same whichever output it came from.

    Preset rules (``default-…``) get origin ``preset``; a local rule is named ``local:<id>``
    (v0.23's spelling, the only documented name of a local rule).
    """
    origin = origin or "local"
    if name.startswith("default-") and origin in ("local", "preset", "system"):
        origin = "preset"
    elif origin == "local":
        name = f"local:{rule_id}"
    applies_to = applies_to.removeprefix("sandbox:") or "all"
    decision = decision.lower()
    if decision not in ("allow", "deny"):
        raise ValueError(f"unknown policy decision {decision!r}")
    return PolicyRule(id=rule_id, decision=decision, resources=tuple(resources), applies_to=applies_to,  # type: ignore[arg-type]
                      name=name, origin=origin)


def parse_policy_json(data: Any) -> list[PolicyRule]:
    """`sbx policy ls --json` (v0.35+): ``{"rules":[…]}``; only active network rules are kept."""
    if isinstance(data, str):
        data = json.loads(data)
    items = (data.get("rules") or []) if isinstance(data, dict) else (data or [])
    rules = []
    for item in items:
        if item.get("resource_type", "network") != "network" or item.get("status", "active") == "inactive":
            continue
        applies_to = item.get("applies_to") or ("all" if item.get("scope", "global") == "global" else "")
        rules.append(_rule(item["id"], item.get("name", ""), item["decision"], list(item.get("resources") or ()),
                           applies_to, item.get("origin", "local")))
    return rules


def parse_policy_table(text: str) -> list[PolicyRule]:
    """The pre-v0.35 tables (keyed by NAME) and the v0.35+ `--wide` table (keyed by RULE_ID)."""
    lines = strip_noise(text).splitlines()  # also skips a `Governance: …` line above the header
    if _header_index(lines, "POLICY") >= 0 and _header_index(lines, "NAME") < 0:
        raise ValueError("this is the v0.35+ summary of `sbx policy ls`, it lists no rules: use --json or --wide")
    at = next((i for i, line in enumerate(lines) if line.split()[:1] in (["NAME"], ["SOURCE"])), -1)
    if at < 0:
        raise ValueError(f"not an `sbx policy ls` table: {text.strip()[:80]!r}")
    cols = columns(lines[at])
    key = "RULE_ID" if any(name == "RULE_ID" for _, name in cols) else "NAME"
    grouped: list[dict[str, Any]] = []
    for line in lines[at + 1:]:
        if not line.strip():
            continue
        row = read_row(line, cols)
        if not row.get(key) and grouped:  # a continuation line: one more resource of the rule above
            grouped[-1]["resources"] += split_list(row.get("RESOURCES", ""))
            continue
        grouped.append({**row, "resources": split_list(row.get("RESOURCES", ""))})
    rules = []
    for row in grouped:
        if row.get("TYPE", "network") not in ("network", "") or row.get("STATUS", "active") == "inactive":
            continue
        rules.append(_rule_from_row(row, key))
    return rules


def _rule_from_row(row: dict[str, Any], key: str) -> PolicyRule:
    if key == "RULE_ID":  # v0.35+ --wide: SOURCE  APPLIES TO  POLICY/RULE  RULE_ID  TYPE  DECISION  RESOURCES
        name = row.get("POLICY/RULE", "").rsplit("/", 1)[-1]
        return _rule(row["RULE_ID"], name, row["DECISION"], row["resources"], row.get("APPLIES TO", "all"),
                     row.get("SOURCE", "local"))
    name = row["NAME"]
    origin = row.get("ORIGIN", "local")  # older docs: ORIGIN is `local` or `sandbox:<name>`
    applies_to = origin if origin.startswith("sandbox:") else "all"
    if origin.startswith("sandbox:"):
        origin = "local"
    # A table shows no id: a local rule's name carries it (`local:<uuid>`), a preset's name is its id.
    rule_id = name.removeprefix("local:")
    return _rule(rule_id, name, row["DECISION"], row["resources"], applies_to, origin)


def parse_added_id(text: str) -> str | None:
    """The new rule's id from `Policy added: <uuid> (<resources>)` (v0.23 wording)."""
    m = re.search(r"Policy added:\s*(\S+)", text)
    return m[1] if m else None


def parse_check(text: str) -> bool | None:
    """`sbx policy check network` (v0.35+): `Allowed: host` → True, `Denied: host` → False."""
    for line in strip_noise(text).splitlines():
        if line.startswith("Allowed:"):
            return True
        if line.startswith("Denied:"):
            return False
    data = json_or_none(text)
    if isinstance(data, dict):  # `--json`: its shape is not documented; read the obvious keys
        if isinstance(data.get("allowed"), bool):
            return data["allowed"]
        if data.get("decision") in ("allow", "deny"):
            return data["decision"] == "allow"
    return None


# ---------------------------------------------------------------- sbx policy log

_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}


def parse_policy_log(text: str, now: datetime | None = None) -> list[PolicyLogEntry]:
    """`sbx policy log` in any shape; entries come blocked first, then newest first."""
    text = strip_noise(text)
    data = json_or_none(text)
    if data is not None:
        entries = parse_log_json(data)
    elif not text.strip() or text.strip().startswith(NO_LOG_ENTRIES):
        entries = []
    else:
        entries = parse_log_text(text, now)
    return sort_log(entries)


def sort_log(entries: list[PolicyLogEntry]) -> list[PolicyLogEntry]:
    """The order every shape is reported in, whatever order the tool printed."""
    return sorted(entries, key=lambda e: (not e.blocked, -(e.last_seen.timestamp() if e.last_seen else 0.0),
                                          e.sandbox, e.host, e.rule))


def parse_log_json(data: Any) -> list[PolicyLogEntry]:
    """`--json`: ``{"blocked_hosts":[…],"allowed_hosts":[…]}`` with ``count_since``, ISO ``last_seen``."""
    if isinstance(data, str):
        data = json.loads(data)
    entries = []
    for key, blocked in (("blocked_hosts", True), ("allowed_hosts", False)):
        for item in data.get(key) or ():
            entries.append(PolicyLogEntry(
                sandbox=item.get("vm_name", ""), host=item.get("host", ""), proxy=item.get("proxy_type", ""),
                rule=item.get("rule", ""), blocked=blocked, count=int(item.get("count_since", item.get("count", 0))),
                last_seen=_iso(item.get("last_seen")), reason=item.get("reason", "") or "",
            ))
    return entries


def _iso(value: str | None) -> datetime | None:
    """An ISO time at second precision (what the table shows), local time zone when it has none."""
    if not value:
        return None
    stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (stamp if stamp.tzinfo else stamp.astimezone()).replace(microsecond=0)


def parse_log_text(text: str, now: datetime | None = None) -> list[PolicyLogEntry]:
    """The sectioned table: `Blocked requests:` / `Allowed requests:`, either order, REASON optional."""
    entries: list[PolicyLogEntry] = []
    blocked: bool | None = None
    cols: list[tuple[int, str]] = []
    for line in strip_noise(text).splitlines():
        title = line.strip()
        if title in ("Blocked requests:", "Allowed requests:"):
            blocked, cols = title.startswith("Blocked"), []
            continue
        if not title or blocked is None:
            continue
        if not cols:
            if line.split()[0] == "SANDBOX":
                cols = columns(line)
            continue
        row = read_row(line, cols)
        entries.append(PolicyLogEntry(
            sandbox=row["SANDBOX"], host=row.get("HOST", ""), proxy=row.get("PROXY", ""), rule=row.get("RULE", ""),
            blocked=blocked, count=int(row.get("COUNT") or 0), last_seen=_last_seen(row.get("LAST SEEN", ""), now),
            reason=row.get("REASON", ""),
        ))
    return entries


def _last_seen(cell: str, now: datetime | None = None) -> datetime | None:
    """``HH:MM:SS D-Mon`` (no year: the most recent such moment not in the future), local time."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2}):(\d{2})\s+(\d{1,2})-([A-Z][a-z]{2})", cell.strip())
    if not m or m[5] not in _MONTHS:
        return None
    now = (now or datetime.now()).astimezone()
    stamp = datetime(now.year, _MONTHS[m[5]], int(m[4]), int(m[1]), int(m[2]), int(m[3])).astimezone()
    if stamp > now + timedelta(days=1):
        stamp = stamp.replace(year=now.year - 1)
    return stamp


# ---------------------------------------------------------------- errors


def init_command(version: SbxVersion | None) -> str:
    """How to initialise the policy on this version: `init` from v0.34, `set-default` before."""
    if version is None or not version.known:
        return f"{fixes.SBX_POLICY_INIT}   (before sbx v0.34: sbx policy set-default balanced)"
    return fixes.SBX_POLICY_INIT if version.at_least(0, 34) else "sbx policy set-default balanced"


_LOGIN = re.compile(r"session has expired|sign-in flow|not (?:signed|logged) in|please (?:sign|log) in", re.I)
_DAEMON = re.compile(r"(?:sandboxd|daemon)\b.*(?:not running|did not start|failed to start|connection refused|"
                     r"cannot connect|no such file)|(?:cannot|could not|failed to) connect to .*(?:sandboxd|daemon)",
                     re.I)
_MISSING = re.compile(r"^Error: sandbox '([^']+)' not found|^ERROR: no sandbox named '([^']+)'", re.M)
_UNKNOWN = re.compile(r'unknown (?:command "[^"]+"|flag: \S+|shorthand flag: \S+)')


def classify(text: str, version: SbxVersion | None = None) -> ToolError | None:
    """The known sbx failure in ``text`` (a failed command's output), or None."""
    if _LOGIN.search(text):
        return ToolError("sbx is not signed in (your Docker session is missing or has expired)",
                         fixes.SBX_LOGIN, "not_signed_in", detail=text)
    if _DAEMON.search(text):
        return ToolError("the sbx daemon (sandboxd) is not running and did not start",
                         fixes.SBX_DAEMON, "daemon_not_running", detail=text)
    if UNINITIALISED in text:
        return ToolError("sbx's network policy has not been initialised yet",
                         f"run: {init_command(version)}", "policy_not_initialised", detail=text)
    m = _MISSING.search(text)
    if m:
        return missing_sandbox(m[1] or m[2], text)
    m = _UNKNOWN.search(text)
    if m:
        return ToolError(f"this sbx ({version or 'version unknown'}) does not support it: {m[0]}",
                         fixes.UPGRADE_SBX, "unsupported",
                         detail=text)
    return None


def missing_sandbox(name: str, detail: str = "") -> ToolError:
    return ToolError(f"there is no sandbox named '{name}'",
                     f"create it: {fixes.create_sandbox(name)}   (list them: sbx ls)", "sandbox_not_found",
                     detail=detail)
