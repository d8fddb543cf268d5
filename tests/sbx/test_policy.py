"""The policy grammar and matcher (pure): examples from the reference, then properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.records import PolicyRule
from labkit.sbx.policy import Policy, PolicyError, deciding, parse_resource, parse_resources, parse_target

pytestmark = [pytest.mark.timeout(60), pytest.mark.fast]


def rule(decision: str, *resources: str, applies_to: str = "all", rid: str = "") -> PolicyRule:
    return PolicyRule(rid or f"{decision}-{'-'.join(resources)}", decision, parse_resources(",".join(resources)),  # type: ignore[arg-type]
                      applies_to, name=rid)


def allowed(rules: list[PolicyRule], host: str, port: int = 443, sandbox: str | None = None) -> bool:
    return Policy(rules).decide(host, port, sandbox).allowed


# ---- examples (reference §1.5, §1.6) -------------------------------------------------------

def test_exact_host_matches_only_itself_on_any_port() -> None:
    rules = [rule("allow", "example.com")]
    assert allowed(rules, "example.com", 443) and allowed(rules, "EXAMPLE.com.", 8080)
    assert not allowed(rules, "api.example.com") and not allowed(rules, "example.org")


def test_port_restricts() -> None:
    rules = [rule("allow", "localhost:12434")]
    assert allowed(rules, "localhost", 12434)
    assert not allowed(rules, "localhost", 12435)


def test_one_label_and_any_depth_wildcards() -> None:
    one, deep = [rule("allow", "*.example.com")], [rule("allow", "**.example.com")]
    assert allowed(one, "a.example.com") and not allowed(one, "a.b.example.com") and not allowed(one, "example.com")
    assert allowed(deep, "a.example.com") and allowed(deep, "a.b.c.example.com") and not allowed(deep, "example.com")
    assert allowed([rule("allow", "**")], "anything.at.all", 1)


def test_host_docker_internal_is_matched_as_localhost() -> None:
    decision = Policy([rule("allow", "localhost:12434")]).decide("host.docker.internal", 12434)
    assert decision.allowed and decision.normalized == "localhost:12434"
    # a rule naming host.docker.internal itself never matches enforcement (sbx normalizes first)
    assert not allowed([rule("allow", "host.docker.internal:12434")], "host.docker.internal", 12434)


def test_ip_literals_are_their_own_resources() -> None:
    assert not allowed([rule("allow", "localhost")], "127.0.0.1", 80)
    assert allowed([rule("allow", "127.0.0.1:80")], "127.0.0.1", 80)
    assert allowed([rule("allow", "[::1]:80")], "[::1]", 80) and allowed([rule("allow", "::1")], "0:0::1", 5)
    assert allowed([rule("allow", "10.0.0.0/8")], "10.1.2.3") and not allowed([rule("allow", "10.0.0.0/8")], "11.0.0.1")


def test_deny_beats_allow_and_default_is_deny() -> None:
    rules = [rule("allow", "**"), rule("deny", "evil.example.com", rid="no-evil")]
    decision = Policy(rules).decide("evil.example.com", 443)
    assert not decision.allowed and decision.rule is not None and decision.rule.id == "no-evil"
    assert "rule:" in decision.block_message() and "origin: local policy" in decision.block_message()
    default = Policy([]).decide("example.com", 80)
    assert not default.allowed and default.rule is None
    assert default.block_message() == ("Blocked by network policy: domain example.com:80\n"
                                       "  detail: no matching allow rule — blocked by default deny policy\n")


def test_deciding_is_the_first_deny_else_the_first_allow_else_none() -> None:
    """The one place deny beats allow: the proxy decides with it, and so do readers of `sbx policy ls`."""
    allow, first_deny, second_deny = rule("allow", "a.com"), rule("deny", "a.com", rid="d1"), rule("deny", "a.com")
    assert deciding([allow, first_deny, second_deny]) is first_deny
    assert deciding([allow, rule("allow", "a.com:443")]) is allow
    assert deciding([]) is None  # no rule names it: the default deny


def test_sandbox_scoped_rules_apply_to_their_sandbox_only() -> None:
    rules = [rule("allow", "pypi.org"), rule("deny", "pypi.org", applies_to="box")]
    assert allowed(rules, "pypi.org", sandbox="other") and allowed(rules, "pypi.org")
    assert not allowed(rules, "pypi.org", sandbox="box")


@pytest.mark.parametrize("text, fix", [
    ("", "empty resource"), ("http://x.com", "not a URL"), ("a.*.com", "first label"), ("x.com:0", "invalid port"),
    ("x.com:99999", "invalid port"), ("bad host", "invalid resource"), ("-x.com", "invalid resource"),
    ("x.com:https", "invalid port"), ("[::1", "unclosed"),
])
def test_malformed_resources_say_how_to_write_them(text: str, fix: str) -> None:
    with pytest.raises(PolicyError, match=fix):
        parse_resource(text)


def test_comma_lists_and_targets() -> None:
    assert parse_resources(" a.com, B.com:443 ,a.com") == ("a.com", "b.com:443")
    assert parse_target("https://api.openai.com/v1/x") == ("api.openai.com", 443)
    assert parse_target("http://host.docker.internal:12434/") == ("host.docker.internal", 12434)
    assert parse_target("pypi.org") == ("pypi.org", 443) and parse_target("10.1.2.3") == ("10.1.2.3", 443)
    with pytest.raises(PolicyError):
        parse_target("*.example.com")


# ---- properties ---------------------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
label = st.tuples(st.text(ALNUM, min_size=1, max_size=6), st.sampled_from(["", "-", "_"]),
                  st.text(ALNUM, max_size=3)).map(lambda t: t[0] + (t[1] + t[2] if t[2] else ""))
hostname = st.lists(label, min_size=1, max_size=4).map(".".join)
port = st.integers(1, 65535)
resource = st.one_of(
    hostname, st.tuples(hostname, port).map(lambda t: f"{t[0]}:{t[1]}"),
    hostname.map(lambda h: f"*.{h}"), hostname.map(lambda h: f"**.{h}"), st.just("**"),
    st.tuples(st.sampled_from(["*.", "**.", ""]), hostname, port).map(lambda t: f"{t[0]}{t[1]}:{t[2]}"),
)
rules_strategy = st.lists(st.tuples(st.sampled_from(["allow", "deny"]), resource), max_size=8).map(
    lambda items: [rule(d, r, rid=f"r{i}") for i, (d, r) in enumerate(items)])


@settings(max_examples=100, deadline=None)
@given(hostname, port)
def test_exact_rule_allows_its_host_case_insensitively(host: str, p: int) -> None:
    rules = [rule("allow", host)]
    assert allowed(rules, host, p) and allowed(rules, host.upper(), p)
    assert not allowed(rules, "x" + host, p)


@settings(max_examples=100, deadline=None)
@given(label, st.lists(label, min_size=1, max_size=3), hostname, port)
def test_wildcard_depths(first: str, more: list[str], domain: str, p: int) -> None:
    one, deep = [rule("allow", f"*.{domain}")], [rule("allow", f"**.{domain}")]
    assert allowed(one, f"{first}.{domain}", p) and allowed(deep, f"{first}.{domain}", p)
    deeper = ".".join([first, *more, domain])
    assert not allowed(one, deeper, p) and allowed(deep, deeper, p)
    assert not allowed(one, domain, p) and not allowed(deep, domain, p)


@settings(max_examples=100, deadline=None)
@given(hostname, port, port)
def test_portless_matches_every_port_and_a_port_only_itself(host: str, p: int, q: int) -> None:
    assert allowed([rule("allow", host)], host, q)
    assert allowed([rule("allow", f"{host}:{p}")], host, q) == (p == q)


@settings(max_examples=150, deadline=None)
@given(rules_strategy, hostname, port, st.randoms(use_true_random=False))
def test_deny_beats_allow_and_order_does_not_matter(rules: list[PolicyRule], host: str, p: int, rnd) -> None:
    decision = Policy(rules).decide(host, p)
    matching = [r for r in rules if any(parse_resource(x).matches(host, p) for x in r.resources)]
    expected = bool(matching) and all(r.decision == "allow" for r in matching)
    assert decision.allowed == expected  # no match → deny; any matching deny → deny
    shuffled = rules[:]
    rnd.shuffle(shuffled)
    assert Policy(shuffled).decide(host, p).allowed == decision.allowed
    if decision.rule is not None:
        assert decision.rule.decision == decision.decision


@settings(max_examples=100, deadline=None)
@given(rules_strategy, port)
def test_host_docker_internal_decides_like_localhost(rules: list[PolicyRule], p: int) -> None:
    rules = rules + [rule("allow", f"localhost:{p}")]
    a = Policy(rules).decide("host.docker.internal", p)
    b = Policy(rules).decide("localhost", p)
    assert (a.allowed, a.normalized, a.rule) == (b.allowed, b.normalized, b.rule)


@settings(max_examples=150, deadline=None)
@given(resource)
def test_canonical_form_is_stable(text: str) -> None:
    canon = parse_resource(text).text
    assert parse_resource(canon).text == canon
    assert parse_resource(text.upper()).text == canon
