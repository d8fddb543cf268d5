"""``sbx policy …`` of the embedded lab: same grammar and output shapes as sbx (docs/sbx-dmr-facts.md §1.5).

Where sbx's exact wording is not documented (the confirmation lines, `init`), the text is
ours and says the same thing; those spots are marked UNCONFIRMED.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .._core.cliutil import Command, Parser, UsageError, confirm, dispatch, fail, table
from ..records import PolicyLogEntry, PolicyRule
from . import audit, rules, store
from .policy import HOST_ALIAS, PolicyError

USAGE = """usage: sbx policy COMMAND …

commands:
  init allow-all|balanced|deny-all             choose the preset (alias: set-default)
  allow network [--sandbox N] "RES[,RES…]"     allow hosts: host, host:port, *.d, **.d, **
  deny network [--sandbox N] "RES[,RES…]"      deny hosts (deny beats allow)
  rm network [--sandbox N] --resource R | --id ID
  ls [--json] [--wide]                         the rules
  check network [--sandbox N] [--json] TARGET  would a request to TARGET pass?
  reset [-f]                                   delete local rules, back to the initial balanced preset
  log [SANDBOX] [--json] [--limit N]           what the proxy allowed and blocked, per host"""


def _network_word(p: Parser, word: str) -> None:
    if word != "network":
        raise UsageError(f"{p.format_usage().rstrip()}\nERROR: '{word}' is not a rule type; "
                         f"write: {p.prog} network {word}")


def _sandbox_exists(name: str | None) -> str | None:
    if name is not None:
        store.get(name)
    return name


def cmd_rule(decision: str, argv: list[str]) -> int:
    p = Parser(prog=f"sbx policy {decision}", description=f"{decision.title()} network access to hosts.")
    p.add_argument("type", metavar="network")
    p.add_argument("--sandbox", help="only for this sandbox (default: all sandboxes)")
    p.add_argument("-g", "--global", dest="is_global", action="store_true", help="all sandboxes (older syntax)")
    p.add_argument("args", nargs="*", metavar="[SANDBOX] RESOURCES")
    args = p.parse_intermixed_args(argv)
    _network_word(p, args.type)
    if not args.args:
        raise UsageError(f"{p.format_usage().rstrip()}\nERROR: give the resources, "
                         f"e.g. {p.prog} network localhost:12434")
    if len(args.args) > 2:
        raise UsageError(f"{p.format_usage().rstrip()}\nERROR: quote a list of resources as one argument, "
                         f'e.g. "a.com,b.com:443"')
    sandbox = args.sandbox or (args.args[0] if len(args.args) == 2 else None)  # older positional scope
    rule = rules.add(decision, args.args[-1], _sandbox_exists(sandbox))  # type: ignore[arg-type]
    # sbx v0.23 prints "Policy added: <uuid> (<resources>)"; current wording UNCONFIRMED.
    print(f"Policy added: {rule.id} ({','.join(rule.resources)})")
    aliased = [r for r in rule.resources if r.split(":")[0] == HOST_ALIAS]
    for res in aliased:
        port = res.partition(":")[2]
        print(f"note: requests to {HOST_ALIAS} are matched as localhost, so '{res}' matches nothing; "
              f"use: sbx policy {decision} network localhost{':' + port if port else ''}", file=sys.stderr)
    return 0


def cmd_rm(argv: list[str]) -> int:
    p = Parser(prog="sbx policy rm", description="Remove a resource from the local rules, or a rule by id.")
    p.add_argument("type", metavar="network")
    p.add_argument("--sandbox", help="the rules of this sandbox (default: the global rules)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--resource", help="a resource as it was added, e.g. localhost:12434")
    group.add_argument("--id", dest="rule_id", help="a rule id (or its first 8+ characters)")
    args = p.parse_intermixed_args(argv)
    _network_word(p, args.type)
    removed = rules.remove(args.resource, args.rule_id, _sandbox_exists(args.sandbox))
    # v0.23: "Policy removed: resources=<resource>"; the --id form's wording is UNCONFIRMED.
    key = "id" if args.rule_id else "resources"
    print(f"Policy removed: {key}={','.join(removed)}")
    return 0


def _rule_json(rule: PolicyRule, preset: str) -> dict[str, Any]:
    # Shape of sbx's rules list (docs/sbx-dmr-facts.md §1.5, from a Go SDK); CLI identity UNCONFIRMED.
    return {"id": rule.id, "name": rule.name, "policy_id": preset if rule.origin == "preset" else "local-policy",
            "scope": "global" if rule.applies_to == "all" else "sandbox", "applies_to": rule.applies_to,
            "resource_type": "network", "decision": rule.decision, "resources": list(rule.resources),
            "origin": rule.origin, "status": "active", "editable": rule.origin == "local"}


def _summary(group: list[PolicyRule]) -> str:
    allow = sum(len(r.resources) for r in group if r.decision == "allow")
    deny = sum(len(r.resources) for r in group if r.decision == "deny")
    return f"network: {allow} allow, {deny} deny"


def cmd_ls(argv: list[str]) -> int:
    p = Parser(prog="sbx policy ls", description="List the network rules (sbx v0.35+ table).")
    p.add_argument("--json", action="store_true")
    p.add_argument("--wide", action="store_true", help="one row per rule, with ids and resources")
    args = p.parse_args(argv)
    state = rules.load()
    if args.json:
        print(json.dumps({"rules": [_rule_json(r, state.preset) for r in state.rules]}))
        return 0
    if args.wide:
        rows = [(r.origin, _applies(r), r.name, r.id, "network", r.decision, ",".join(r.resources))
                for r in state.rules]
        print(table(("SOURCE", "APPLIES TO", "POLICY/RULE", "RULE_ID", "TYPE", "DECISION", "RESOURCES"), rows))
        return 0
    preset = rules.preset_rules(state.preset)
    summary = [(state.preset, "preset", "all", _summary(list(preset)) + (
        " (default deny)" if state.preset != "allow-all" else ""))]
    scopes = dict.fromkeys(r.applies_to for r in state.local)
    for scope in scopes:
        group = [r for r in state.local if r.applies_to == scope]
        summary.append(("local-policy", "local", _applies(group[0]), _summary(group)))
    print(table(("POLICY", "SOURCE", "APPLIES TO", "SUMMARY"), summary))
    return 0


def _applies(rule: PolicyRule) -> str:
    return "all" if rule.applies_to == "all" else f"sandbox:{rule.applies_to}"


def cmd_check(argv: list[str]) -> int:
    p = Parser(prog="sbx policy check", description="Would the proxy let a request to TARGET through? "
               "Bare hosts and IP literals are evaluated with port 443. Exit 0 either way.")
    p.add_argument("type", metavar="network")
    p.add_argument("--sandbox", help="evaluate with this sandbox's rules too")
    p.add_argument("--json", action="store_true")
    p.add_argument("--verbose", "-v", action="store_true", help="say which rule decided")
    p.add_argument("target", metavar="TARGET", help="hostname, host:port, IP or URL")
    args = p.parse_intermixed_args(argv)
    _network_word(p, args.type)
    verdict = rules.check(args.target, _sandbox_exists(args.sandbox))
    if args.json:
        rule = verdict.rule
        print(json.dumps({"target": args.target, "host": verdict.host, "port": verdict.port,
                          "normalized": verdict.normalized, "decision": verdict.decision,
                          "rule": None if rule is None else {"id": rule.id, "name": rule.name,
                                                             "resource": verdict.resource},
                          "detail": verdict.detail()}))
        return 0
    print(f"{'Allowed' if verdict.allowed else 'Denied'}: {args.target}")
    if args.verbose:
        print(f"  {verdict.detail()}")
    return 0


def cmd_init(argv: list[str], prog: str = "init") -> int:
    p = Parser(prog=f"sbx policy {prog}", description="Choose the preset; local rules are kept.")
    p.add_argument("preset", choices=rules.PRESETS)
    state = rules.init(p.parse_args(argv).preset)
    count = sum(len(r.resources) for r in rules.preset_rules(state.preset))
    meaning = {"allow-all": "all outbound network traffic is allowed",
               "balanced": f"default deny, with a baseline allowlist of {count} hosts",
               "deny-all": "all outbound traffic is blocked unless a rule allows it"}[state.preset]
    print(f"Network policy initialized: {state.preset} ({meaning})")  # wording UNCONFIRMED
    return 0


def cmd_reset(argv: list[str]) -> int:
    p = Parser(prog="sbx policy reset", description="Delete the local policy store; the embedded lab "
               "re-initialises it as balanced.")
    p.add_argument("-f", "--force", action="store_true", help="skip the confirmation prompt")
    answer = confirm("Delete all local network rules?", p.parse_args(argv).force)
    if answer is None:
        return fail("sbx policy reset asks for confirmation and there is no terminal; rerun with -f")
    if not answer:
        return 1
    rules.reset()
    print(f"Local policy store deleted; the network policy is the initial {rules.INITIAL_PRESET} preset again.")
    return 0


def cmd_log(argv: list[str]) -> int:
    p = Parser(prog="sbx policy log", description="Requests the proxy blocked and allowed, per sandbox and host.")
    p.add_argument("sandbox", nargs="?", help="only this sandbox")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=0, help="at most N rows per section")
    p.add_argument("-q", "--quiet", action="store_true", help="hosts only")
    p.add_argument("--type", choices=("all", "network"), default="all")
    args = p.parse_args(argv)
    entries = audit.policy_log(args.sandbox)
    blocked = [e for e in entries if e.blocked]
    allowed = [e for e in entries if not e.blocked]
    if args.limit > 0:
        blocked, allowed = blocked[:args.limit], allowed[:args.limit]
    if args.json:
        def row(e: PolicyLogEntry) -> dict[str, Any]:
            seen = e.last_seen.astimezone().isoformat() if e.last_seen else None
            # "reason" is in the text table of newer sbx; whether its JSON has it is UNCONFIRMED.
            return {"host": e.host, "vm_name": e.sandbox, "proxy_type": e.proxy, "rule": e.rule,
                    "reason": e.reason, "last_seen": seen, "since": seen, "count_since": e.count}
        print(json.dumps({"blocked_hosts": [row(e) for e in blocked], "allowed_hosts": [row(e) for e in allowed]}))
        return 0
    if not entries:
        print("No policy log entries found")
        return 0
    if args.quiet:
        for e in blocked + allowed:
            print(e.host)
        return 0
    header = ("SANDBOX", "TYPE", "HOST", "PROXY", "RULE", "REASON", "LAST SEEN", "COUNT")
    sections = []
    for title, group in (("Blocked requests:", blocked), ("Allowed requests:", allowed)):
        if group:
            rows = [(e.sandbox, "network", e.host, e.proxy, e.rule, e.reason, _seen(e), str(e.count)) for e in group]
            sections.append(f"{title}\n{table(header, rows)}")
    print("\n\n".join(sections))
    return 0


def _seen(entry: PolicyLogEntry) -> str:
    return entry.last_seen.astimezone().strftime("%H:%M:%S %-d-%b") if entry.last_seen else ""


COMMANDS: dict[str, Command] = {
    "init": cmd_init, "set-default": lambda a: cmd_init(a, "set-default"),
    "allow": lambda a: cmd_rule("allow", a), "deny": lambda a: cmd_rule("deny", a),
    "rm": cmd_rm, "ls": cmd_ls, "check": cmd_check, "reset": cmd_reset, "log": cmd_log,
}


def main(argv: list[str]) -> int:
    try:
        return dispatch(argv, COMMANDS, USAGE, "unknown policy command '{}'; see: sbx policy --help")
    except PolicyError as exc:
        return fail(str(exc))
