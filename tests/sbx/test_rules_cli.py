"""The persistent policy store and the `sbx policy` / `labkit audit` faces of it."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys

import pytest
from sbx_helpers import audit_mark, audit_wait, sbx

from labkit.sbx import audit, rules
from tests.support import wait_for

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("fresh_policy")]


def test_starts_balanced_and_lists_presets_then_local_rules() -> None:
    state = rules.load()
    assert state.preset == "balanced" and state.local == ()
    names = [r.name for r in state.rules]
    assert names[0] == "default-ai-services" and all(r.origin == "preset" for r in state.rules)
    assert rules.check("pypi.org").allowed and rules.check("files.pythonhosted.org:443").allowed
    assert not rules.check("example.com").allowed and not rules.check("localhost:12434").allowed
    listed = json.loads(sbx("policy", "ls", "--json").stdout)["rules"]
    assert [r["name"] for r in listed] == names
    assert {r["policy_id"] for r in listed} == {"balanced"}


def test_concurrent_cli_calls_lose_no_rule() -> None:
    procs = [subprocess.Popen([sys.executable, "-m", "labkit.sbx.cli", "policy", "allow", "network", f"h{i}.example"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(8)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    resources = sorted(r.resources[0] for r in rules.load().local)
    assert resources == sorted(f"h{i}.example" for i in range(8))


def test_presets_keep_local_rules_and_reset_returns_to_balanced() -> None:
    rules.add("allow", "localhost:12434")
    assert sbx("policy", "init", "deny-all").returncode == 0
    assert not rules.check("pypi.org").allowed and rules.check("localhost:12434").allowed
    assert sbx("policy", "set-default", "allow-all").returncode == 0
    assert rules.check("anything.example:1").allowed
    assert sbx("policy", "reset", "-f").returncode == 0
    state = rules.load()
    assert state.preset == "balanced" and state.local == ()


def test_rm_by_resource_and_by_id() -> None:
    both = rules.add("allow", "a.example,b.example")
    other = rules.add("deny", "c.example")
    done = sbx("policy", "rm", "network", "--resource", "A.example")
    assert done.stdout == "Policy removed: resources=a.example\n"
    assert [r.resources for r in rules.load().local] == [("b.example",), ("c.example",)]
    assert sbx("policy", "rm", "network", "--id", other.id[:8]).returncode == 0
    assert [r.id for r in rules.load().local] == [both.id]


def test_check_output_and_host_docker_internal_hint() -> None:
    done = sbx("policy", "allow", "network", "host.docker.internal:12434")
    assert done.returncode == 0 and "use: sbx policy allow network localhost:12434" in done.stderr
    assert sbx("policy", "check", "network", "host.docker.internal:12434").stdout == (
        "Denied: host.docker.internal:12434\n")
    sbx("policy", "allow", "network", "localhost:12434")
    verbose = sbx("policy", "check", "network", "-v", "http://host.docker.internal:12434/v1").stdout
    assert verbose.startswith("Allowed: http://host.docker.internal:12434/v1\n") and "localhost:12434" in verbose


def test_policy_log_and_audit_cli_read_the_same_records(proxy_port: int) -> None:
    assert sbx("policy", "log", "no-traffic-box").stdout == "No policy log entries found\n"
    mark = audit_mark()
    for target in ("http://blocked.example/", "http://blocked.example/again"):
        conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
        conn.request("GET", target)
        conn.getresponse().read()
    audit_wait(mark, 2)
    entries = audit.policy_log()
    blocked = [e for e in entries if e.host == "blocked.example:80"]
    assert len(blocked) == 1 and blocked[0].count >= 2 and blocked[0].rule == "domain-blocked"
    assert blocked[0].reason == "default-deny"
    log = json.loads(sbx("policy", "log", "--json").stdout)
    assert any(h["host"] == "blocked.example:80" and h["count_since"] >= 2 for h in log["blocked_hosts"])
    raw = subprocess.run([sys.executable, "-c", "from labkit.sbx.audit import main; main(['--decision', 'deny', "
                          "'--json', '-n', '2'])"], capture_output=True, text=True, timeout=30)
    lines = [json.loads(line) for line in raw.stdout.splitlines()]
    assert [r["url"] for r in lines] == ["http://blocked.example/", "http://blocked.example/again"]
    assert all(set(audit.FIELDS) <= set(r) for r in lines)
    text = subprocess.run([sys.executable, "-c", "from labkit.sbx.audit import main; main(['-n', '1'])"],
                          capture_output=True, text=True, timeout=30).stdout
    assert "DENY" in text and "403" in text and "http://blocked.example/again" in text


def test_labkit_audit_follow_prints_new_records(proxy_port: int) -> None:
    follower = subprocess.Popen([sys.executable, "-c", "from labkit.sbx.audit import main; "
                                 "main(['--follow', '--decision', 'deny'])"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert follower.stdout is not None
        os.set_blocking(follower.stdout.fileno(), False)
        seen = ""

        def printed() -> bool:
            nonlocal seen
            conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
            conn.request("GET", "http://followed.example/")
            conn.getresponse().read()
            seen += (follower.stdout.read() or b"").decode()  # type: ignore[union-attr]
            return "http://followed.example/" in seen

        wait_for(printed, 20, "labkit audit --follow to print the new record")
        assert "DENY" in seen and "403" in seen
    finally:
        follower.kill()
        follower.wait()


def test_live_policy_sees_every_change_even_within_one_timestamp_tick() -> None:
    live = rules.LivePolicy()
    assert not live.get().decide("aaaa.example", 443).allowed
    for host in ("aaaa.example", "bbbb.example", "cccc.example"):  # same sizes, back to back
        rules.reset()
        rules.add("allow", host)
        assert live.get().decide(host, 443).allowed, host
        assert [h for h in ("aaaa.example", "bbbb.example", "cccc.example")
                if live.get().decide(h, 443).allowed] == [host]


def test_audit_writer_follows_a_replaced_log(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "audit.jsonl"
    writer = audit.Writer(path)
    record = {"ts": "2026-01-01T00:00:00+00:00", "sandbox": None, "method": "GET", "url": "http://a/", "host": "a",
              "port": 80, "normalized": "a:80", "decision": "deny", "rule": {"id": "default-deny", "text": ""},
              "status": 403, "bytes_up": 0, "bytes_down": 1, "duration_ms": 0.1}
    writer.append(record)
    path.unlink()
    writer.append({**record, "url": "http://b/"})
    assert [r.url for r in audit.read(path=path)] == ["http://b/"]
