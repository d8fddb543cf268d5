"""The sbx parsers against the reference's own samples (docs/sbx-dmr-facts.md), copied verbatim."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from labkit.records import PolicyLogEntry, PolicyRule, SandboxInfo
from labkit.tools import sbx_output as so

pytestmark = pytest.mark.fast

# §1.4, the table from the docs (its PORTS cell runs one space into WORKSPACE's column).
LS_TABLE = """\
SANDBOX         AGENT   STATUS   PORTS                    WORKSPACE
my-sandbox      claude  running  127.0.0.1:8080->3000/tcp4 /home/user/proj
"""

# §1.4, `--json` in v0.23.
LS_JSON = """\
{"sandboxes":[{"name":"test-ports","agent":"claude","status":"running",
  "ports":[{"host_ip":"127.0.0.1","host_port":8080,"sandbox_port":3000,"protocol":"tcp"}],
  "socket_path":"/tmp/sboxd-501-sandboxes/docker.sock","workspaces":["/Users/dev/project"]}]}
"""

# §1.5, the current docs' log sample: REASON, blocked first, REASON empty on the allowed row.
LOG_TEXT = """\
Blocked requests:
SANDBOX      TYPE     HOST                   PROXY        RULE            REASON         LAST SEEN        COUNT
my-sandbox   network  blocked.example.com    transparent  domain-blocked  default-deny   10:15:25 29-Jan  1

Allowed requests:
SANDBOX      TYPE     HOST                   PROXY          RULE             REASON   LAST SEEN        COUNT
my-sandbox   network  api.anthropic.com      forward        domain-allowed            10:15:23 29-Jan  42
"""

# §1.5, `--json` in v0.23 (its elided `allowed_hosts:[…]` filled with one row).
LOG_JSON = """\
{"blocked_hosts":[{"host":"evil.example.com","vm_name":"test-verify","proxy_type":"forward","rule":"user-denied",
   "last_seen":"2026-04-04T18:56:01.123456+09:00","since":"2026-04-04T18:56:01.123456+09:00","count_since":3}],
 "allowed_hosts":[{"host":"ports.ubuntu.com:80","vm_name":"test-verify","proxy_type":"forward","rule":"domain-allowed",
   "last_seen":"2026-04-04T18:50:00+09:00","since":"2026-04-04T18:40:00+09:00","count_since":12}]}
"""


def test_ls_table_from_the_docs() -> None:
    assert so.parse_ls(LS_TABLE) == [
        SandboxInfo("my-sandbox", "claude", "running", ("/home/user/proj",), ("127.0.0.1:8080->3000/tcp4",))
    ]


def test_ls_json_v023_and_absent_ports() -> None:
    assert so.parse_ls(LS_JSON) == [
        SandboxInfo("test-ports", "claude", "running", ("/Users/dev/project",), ("127.0.0.1:8080->3000/tcp",))
    ]
    no_ports = '{"sandboxes":[{"name":"a","agent":"shell","status":"stopped","workspaces":["/w"]}]}'
    assert so.parse_ls(no_ports) == [SandboxInfo("a", "shell", "stopped", ("/w",), ())]


def test_ls_empty_shapes_and_daemon_line() -> None:
    assert so.parse_ls("No sandboxes found.\n") == []
    assert so.parse_ls('Starting sandboxd daemon...\n{"sandboxes":[]}\n') == []
    assert so.parse_ls("Starting sandboxd daemon...\nNo sandboxes found.\n") == []


def test_log_text_from_the_docs() -> None:
    now = datetime(2026, 3, 1, 12, 0).astimezone()
    jan29 = datetime(2026, 1, 29).astimezone()
    assert so.parse_policy_log(LOG_TEXT, now=now) == [
        PolicyLogEntry("my-sandbox", "blocked.example.com", "transparent", "domain-blocked", True, 1,
                       jan29.replace(hour=10, minute=15, second=25), "default-deny"),
        PolicyLogEntry("my-sandbox", "api.anthropic.com", "forward", "domain-allowed", False, 42,
                       jan29.replace(hour=10, minute=15, second=23), ""),
    ]


def test_log_text_v023_without_reason_allowed_first() -> None:
    old = "\n".join([
        "Allowed requests:",
        "SANDBOX      TYPE     HOST                 PROXY    RULE            LAST SEEN        COUNT",
        "test-verify  network  ports.ubuntu.com:80  forward  domain-allowed  18:50:00 4-Apr   12",
        "",
        "Blocked requests:",
        "SANDBOX      TYPE     HOST                 PROXY    RULE            LAST SEEN        COUNT",
        "test-verify  network  evil.example.com     forward  user-denied     18:56:01 4-Apr   3",
    ])
    entries = so.parse_policy_log(old, now=datetime(2026, 4, 5).astimezone())
    assert [(e.host, e.blocked, e.count, e.reason) for e in entries] == [
        ("evil.example.com", True, 3, ""), ("ports.ubuntu.com:80", False, 12, "")]
    assert entries[0].last_seen == datetime(2026, 4, 4, 18, 56, 1).astimezone()


def test_log_json_v023() -> None:
    entries = so.parse_policy_log(LOG_JSON)
    tz = timezone(timedelta(hours=9))
    assert entries == [
        PolicyLogEntry("test-verify", "evil.example.com", "forward", "user-denied", True, 3,
                       datetime(2026, 4, 4, 18, 56, 1, tzinfo=tz)),
        PolicyLogEntry("test-verify", "ports.ubuntu.com:80", "forward", "domain-allowed", False, 12,
                       datetime(2026, 4, 4, 18, 50, 0, tzinfo=tz)),
    ]


def test_log_empty_shapes() -> None:
    assert so.parse_policy_log("No policy log entries found\n") == []
    assert so.parse_policy_log('{"blocked_hosts":null,"allowed_hosts":[]}') == []


def test_last_seen_without_a_year_is_the_latest_past_one() -> None:
    now = datetime(2026, 1, 2, 9, 0).astimezone()
    assert so._last_seen("23:59:00 31-Dec", now) == datetime(2025, 12, 31, 23, 59).astimezone()
    assert so._last_seen("08:00:00 2-Jan", now) == datetime(2026, 1, 2, 8, 0).astimezone()
    assert so._last_seen("not a time", now) is None


RULES_V023 = """\
NAME                                        TYPE     DECISION  RESOURCES
default-allow-all                           network  allow     **

local:4f9c2b1e-1111-4222-8333-944455556666  network  allow     localhost:12434
"""

RULES_ORIGIN = """\
NAME                                   TYPE     ORIGIN            DECISION  STATUS    RESOURCES
default-ai-services                    network  local             allow     active    api.anthropic.com,api.openai.com
local:4f9c2b1e-1111-4222-8333-9444555  network  sandbox:dmr-test  deny      active    evil.example.com
local:0a0a0a0a-1111-4222-8333-9444555  network  local             allow     inactive  example.org
"""

RULES_WIDE = """\
Governance: Managed by my-org | Sync: OK, last synced 08:21:01 | Hidden: 9 inactive rules. …
SOURCE  APPLIES TO        POLICY/RULE          RULE_ID  TYPE             DECISION  RESOURCES         METHOD  PATH
org     all               org-policy/no-paste  r-1      network          deny      pastebin.com      -       -
local   sandbox:dmr-test  local-policy/x       r-2      network          allow     localhost:12434   GET     /v1/**
local   all               local-policy/fs      r-3      filesystem read  allow     ~/.gitconfig
"""

# §1.5, the JSON shape from [T-sdk] with its placeholders filled in.
RULES_JSON = """\
{"rules":[{"id":"r-9","name":"default-os-packages","policy_id":"p","scope":"global","applies_to":"all",
  "resource_type":"network","decision":"allow","resources":["ports.ubuntu.com"],"origin":"local","status":"active",
  "editable":false},
 {"id":"r-2","name":"mine","policy_id":"p","scope":"sandbox","applies_to":"dmr-test","resource_type":"network",
  "decision":"allow","resources":["localhost:12434"],"origin":"local","status":"active","editable":true},
 {"id":"r-3","name":"kit-rule","policy_id":"k","scope":"global","applies_to":"all","resource_type":"network",
  "decision":"allow","resources":["host.docker.internal:12434"],"origin":"kit","status":"inactive","editable":false}]}
"""


def test_policy_tables_of_every_era() -> None:
    uid = "4f9c2b1e-1111-4222-8333-944455556666"
    assert so.parse_policy_rules(RULES_V023) == [
        PolicyRule("default-allow-all", "allow", ("**",), "all", "default-allow-all", "preset"),
        PolicyRule(uid, "allow", ("localhost:12434",), "all", f"local:{uid}", "local"),
    ]
    assert so.parse_policy_rules(RULES_ORIGIN) == [  # the inactive rule is left out
        PolicyRule("default-ai-services", "allow", ("api.anthropic.com", "api.openai.com"), "all",
                   "default-ai-services", "preset"),
        PolicyRule(uid[:-5], "deny", ("evil.example.com",), "dmr-test", f"local:{uid[:-5]}", "local"),
    ]
    assert so.parse_policy_rules(RULES_WIDE) == [  # an HTTP rule's METHOD/PATH columns are read past
        PolicyRule("r-1", "deny", ("pastebin.com",), "all", "no-paste", "org"),
        PolicyRule("r-2", "allow", ("localhost:12434",), "dmr-test", "local:r-2", "local"),
    ]
    assert so.parse_policy_rules(RULES_JSON) == [
        PolicyRule("r-9", "allow", ("ports.ubuntu.com",), "all", "default-os-packages", "preset"),
        PolicyRule("r-2", "allow", ("localhost:12434",), "dmr-test", "local:r-2", "local"),
    ]


def test_v035_summary_is_refused_not_misread() -> None:
    summary = ("POLICY        SOURCE  APPLIES TO  SUMMARY\n"
               "local-policy  local   all         network: 42 allow, 1 deny; filesystem read: 1 allow; "
               "filesystem write: 1 allow\n")
    with pytest.raises(ValueError, match="--json or --wide"):
        so.parse_policy_rules(summary)


def test_version_added_id_and_check() -> None:
    assert so.parse_version("sbx version v0.42.1 (abc123)") == so.SbxVersion(0, 42, 1)
    assert so.parse_version("Starting sandboxd daemon...\n0.35.0\n").at_least(0, 35)
    unknown = so.parse_version("sbx (development build)")
    assert not unknown.known and unknown.at_least(9, 0)  # unknown counts as newest: the documented syntax
    assert so.parse_added_id("Policy added: 4f9c2b1e-1111 (localhost:12434)") == "4f9c2b1e-1111"
    assert so.parse_added_id("✓ done") is None
    assert so.parse_check("Allowed: api.anthropic.com\n") is True
    assert so.parse_check("Denied: blocked.example.com\n") is False
    assert so.parse_check("something else") is None


@pytest.mark.parametrize(("text", "kind"), [
    ("Error: sandbox 'x' not found", "sandbox_not_found"),  # v0.23 [T-ui]
    ("ERROR: no sandbox named 'none'\n\nTo create one:\n  sbx create AGENT WORKSPACE", "sandbox_not_found"),  # SR#504
    ("global network policy has not been initialized", "policy_not_initialised"),
    ("Your Docker session has expired. Starting the sign-in flow...", "not_signed_in"),
    ('Error: unknown command "check" for "sbx policy"', "unsupported"),
    ("Error: unknown flag: --json", "unsupported"),
    ("ERROR: publish port: port 127.0.0.1:8080/tcp is already published", None),
])
def test_classify_documented_texts(text: str, kind: str | None) -> None:
    err = so.classify(text)
    assert (err.kind if err else None) == kind
    if err:
        assert len(str(err).splitlines()) == 2


def test_uninitialised_fix_follows_the_version() -> None:
    text = "global network policy has not been initialized"
    assert so.classify(text, so.SbxVersion(0, 23, 0)).fix == "run: sbx policy set-default balanced"
    assert so.classify(text, so.SbxVersion(0, 42, 1)).fix == "run: sbx policy init balanced"
    assert "set-default" in so.classify(text, None).fix and "init balanced" in so.classify(text, None).fix
