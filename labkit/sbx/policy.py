"""sbx's network-policy grammar and matching, as pure functions (no I/O).

Grammar (docs/sbx-dmr-facts.md §1.5): a rule carries comma-separated resources, each ``host``,
``host:port``, ``*.domain`` (exactly one more label), ``**.domain`` (any depth, at least
one label), ``**`` (everything), an IP literal, or a CIDR range; a portless resource matches
every port; names compare case-insensitively. Decision (:func:`deciding`, the one place that
says it): any matching deny wins, else any matching allow, else the default deny. IP literals
are their own resources (``127.0.0.1`` is not ``localhost``). A request to
``host.docker.internal:P`` is matched as ``localhost:P``, the way sbx's proxy does it.

The proxy, the ``sbx policy`` CLI and the tests all decide through :class:`Policy`, so
what ``sbx policy check`` says is what the proxy enforces; readers of ``sbx policy ls`` (the
notebooks' policy switch and checkpoints) call :func:`deciding` on the rules they read.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, NamedTuple, Protocol, TypeVar
from urllib.parse import urlsplit

from ..errors import LabError
from ..records import PolicyRule, RuleDecision

# sbx translates this name to localhost before matching and forwarding (docs/sbx-dmr-facts.md §1.6).
HOST_ALIAS = "host.docker.internal"
LOOPBACK_NAME = "localhost"
# `sbx policy check`: "Bare hosts and IP literals are evaluated with port 443."
DEFAULT_CHECK_PORT = 443

# The dash of sbx's detail line is "—" in the docs and "-" in one issue capture;
# UNCONFIRMED which one sbx prints today, we follow the docs.
DEFAULT_DENY_DETAIL = "no matching allow rule — blocked by default deny policy"

# How sbx names a rule's origin in a 403 body (docs/sbx-dmr-facts.md §1.6).
ORIGIN_LABELS = {"local": "local policy", "org": "corporate policy", "preset": "system policy", "kit": "kit policy"}

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")

PatternKind = Literal["all", "exact", "ip", "one", "any", "cidr"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class PolicyError(LabError, ValueError):
    """A resource or target that does not follow the grammar (or a rule that is not there).

    The message says how to write it: it is printed as is by the embedded ``sbx policy``, the way
    sbx prints its own errors, so the fix stays inside the one line.
    """


@dataclass(frozen=True)
class Pattern:
    """One parsed resource of a rule."""

    text: str  # canonical form, e.g. "*.example.com:443"
    kind: PatternKind
    host: str  # exact host, IP, or the domain under a wildcard ("" for ** and CIDR)
    port: int | None  # None = any port
    network: IPNetwork | None = None

    def matches(self, host: str, port: int) -> bool:
        """Does this resource cover ``host:port`` (host already normalized)?"""
        if self.port is not None and self.port != port:
            return False
        if self.kind == "all":
            return True
        if self.kind in ("exact", "ip"):
            return host == self.host
        if self.kind == "one":
            head, _, tail = host.partition(".")
            return bool(head) and tail == self.host
        if self.kind == "any":
            return host.endswith("." + self.host)
        if self.kind == "cidr" and self.network is not None:
            ip = _ip(host)
            return ip is not None and ip.version == self.network.version and ip in self.network
        return False


class Decided(Protocol):
    """Anything that carries a rule's decision (a ``PolicyRule``, a matched entry)."""

    @property
    def decision(self) -> RuleDecision: ...


D = TypeVar("D", bound=Decided)


def deciding(matches: Iterable[D]) -> D | None:
    """Of the rules that match one request, the one that decides: deny beats allow.

    The first deny in ``matches``' order, else the first allow; None when nothing matched,
    which is the default deny. The proxy (through :meth:`Policy.decide`), the policy switch and
    the checkpoints all decide with this one function.
    """
    first: D | None = None
    for match in matches:
        if match.decision == "deny":
            return match
        if first is None:
            first = match
    return first


@dataclass(frozen=True)
class Verdict:
    """The verdict for one request, with enough to explain it (403 body, audit, `check`)."""

    allowed: bool
    host: str  # requested host, lowercased (e.g. "host.docker.internal")
    port: int
    normalized: str  # what was matched, e.g. "localhost:12434"
    rule: PolicyRule | None = None  # the deciding rule; None = default deny
    resource: str = ""  # the resource of that rule that matched

    @property
    def decision(self) -> RuleDecision:
        return "allow" if self.allowed else "deny"

    @property
    def target(self) -> str:
        return f"{_bracket(self.host)}:{self.port}"

    def detail(self) -> str:
        """The ``detail:`` line sbx puts under a block, or why the request may pass."""
        alias = f" (matched as {self.normalized})" if self.normalized != self.target else ""
        if self.rule is None:
            return DEFAULT_DENY_DETAIL + alias
        verb = "allowed" if self.allowed else "denied"
        return f"{verb} by rule {self.rule.name or self.rule.id} ({self.resource}){alias}"

    def block_message(self) -> str:
        """sbx's 403 text: first line, then a rule/origin block for explicit denies, then detail."""
        lines = [f"Blocked by network policy: domain {self.target}"]
        if self.rule is not None and not self.allowed:
            lines.append(f'  rule:   "{self.rule.name or self.rule.id}" (domain, deny)')
            lines.append(f"  origin: {ORIGIN_LABELS.get(self.rule.origin, self.rule.origin + ' policy')}")
        lines.append(f"  detail: {self.detail()}")
        return "\n".join(lines) + "\n"


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _parse_port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise PolicyError(f"invalid port in '{whole}': use a number from 1 to 65535, e.g. localhost:12434")
    return int(text)


def _split_host_port(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 literal / CIDR."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise PolicyError(f"unclosed '[' in '{text}': write IPv6 as [::1]:8080")
        rest = text[end + 1:]
        if rest and not rest.startswith(":"):
            raise PolicyError(f"unexpected text after ']' in '{text}'")
        return text[1:end], _parse_port(rest[1:], text) if rest else None
    if text.count(":") > 1:  # a bare IPv6 literal (or v6 CIDR): no port possible
        return text, None
    host, sep, port = text.partition(":")
    return host, _parse_port(port, text) if sep else None


def _check_name(name: str, whole: str) -> str:
    name = name.rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise PolicyError(
            f"invalid resource '{whole}': expected a hostname, host:port, *.domain, **.domain, "
            f"** or an IP address, e.g. api.example.com:443"
        )
    return name


@lru_cache(maxsize=4096)
def parse_resource(text: str) -> Pattern:
    """Parse one resource of the grammar; raises :class:`PolicyError` with the fix."""
    raw = text.strip().lower()
    if not raw:
        raise PolicyError("empty resource: give a hostname such as localhost:12434")
    if "://" in raw or "/" in raw.split(":")[0] and not _looks_cidr(raw):
        raise PolicyError(f"invalid resource '{text.strip()}': give a host or host:port, not a URL")
    host, port = _split_host_port(raw)
    if host == "**":
        return Pattern(f"**{_port_suffix(port)}", "all", "", port)
    wildcards: tuple[tuple[str, PatternKind], ...] = (("**.", "any"), ("*.", "one"))
    for prefix, kind in wildcards:
        if host.startswith(prefix):
            domain = _check_name(host[len(prefix):], text.strip())
            if "*" in domain:
                raise PolicyError(_wildcard_hint(text))
            return Pattern(f"{prefix}{domain}{_port_suffix(port)}", kind, domain, port)
    if "*" in host:
        raise PolicyError(_wildcard_hint(text))
    if "/" in host:
        # CIDR ranges are documented for governance rules; whether local rules take them is
        # UNCONFIRMED (docs/sbx-dmr-facts.md §1.5). We accept them: they match IP-literal targets only.
        try:
            net = ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise PolicyError(f"invalid CIDR range in '{text.strip()}', e.g. 10.0.0.0/8") from None
        return Pattern(f"{_bracket_cidr(net)}{_port_suffix(port)}", "cidr", "", port, net)
    ip = _ip(host)
    if ip is not None:
        return Pattern(f"{_bracket(str(ip))}{_port_suffix(port)}", "ip", str(ip), port)
    name = _check_name(host, text.strip())
    return Pattern(f"{name}{_port_suffix(port)}", "exact", name, port)


def _looks_cidr(raw: str) -> bool:
    return bool(re.match(r"^[0-9a-f:.\[\]]+/\d{1,3}(:\d+)?$", raw))


def _bracket_cidr(net: IPNetwork) -> str:
    return f"[{net}]" if net.version == 6 else str(net)


def _wildcard_hint(text: str) -> str:
    return (
        f"invalid wildcard in '{text.strip()}': a wildcard may only be the first label, "
        "as *.example.com (one level) or **.example.com (any depth), or ** alone"
    )


def _port_suffix(port: int | None) -> str:
    return "" if port is None else f":{port}"


def parse_resources(text: str) -> tuple[str, ...]:
    """Split a comma list (``"a.com,b.com:443"``) and return the canonical resources."""
    items = [item for item in (part.strip() for part in text.split(",")) if item]
    if not items:
        raise PolicyError("no resources given: e.g. sbx policy allow network localhost:12434")
    return tuple(dict.fromkeys(parse_resource(item).text for item in items))


def normalize_host(host: str) -> str:
    """Lowercase, no trailing dot or brackets, canonical IP text; host.docker.internal → localhost."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    ip = _ip(host)
    if ip is not None:
        return str(ip)
    return LOOPBACK_NAME if host == HOST_ALIAS else host


def parse_target(target: str) -> tuple[str, int]:
    """A `check` target: hostname, host:port, IP literal or URL → (host, port)."""
    text = target.strip()
    if not text:
        raise PolicyError("empty target: e.g. sbx policy check network api.example.com")
    if "://" in text:
        parts = urlsplit(text)
        if not parts.hostname:
            raise PolicyError(f"no host in URL '{text}'")
        try:
            port = parts.port
        except ValueError:
            raise PolicyError(f"invalid port in URL '{text}'") from None
        default = 80 if parts.scheme == "http" else DEFAULT_CHECK_PORT
        return parts.hostname.lower(), port or default
    host, port = _split_host_port(text.lower())
    if "*" in host or "/" in host:
        raise PolicyError(f"'{text}' is a pattern, not a target: give one host, e.g. pypi.org:443")
    if _ip(host) is None:
        _check_name(host, text)
    return host.rstrip("."), port or DEFAULT_CHECK_PORT


class _Entry(NamedTuple):
    """One resource of one rule, compiled: ``order`` is the rule's place in the policy."""

    order: int
    rule: PolicyRule
    pattern: Pattern

    @property
    def decision(self) -> RuleDecision:
        return self.rule.decision


class Policy:
    """A compiled rule set. ``decide`` is what the proxy calls for every request.

    Exact hosts and IPs are indexed by name, so a request is compared with its own exact
    entries and the (few) wildcard and CIDR patterns only, not with the whole baseline.
    """

    def __init__(self, rules: Iterable[PolicyRule]) -> None:
        self.rules: tuple[PolicyRule, ...] = tuple(rules)
        self._exact: dict[str, list[_Entry]] = {}
        self._patterns: list[_Entry] = []
        for order, rule in enumerate(self.rules):
            for pattern in (parse_resource(r) for r in rule.resources):
                if pattern.kind in ("exact", "ip"):
                    self._exact.setdefault(pattern.host, []).append(_Entry(order, rule, pattern))
                else:
                    self._patterns.append(_Entry(order, rule, pattern))

    def loopback_ports(self, sandbox: str | None = None) -> set[int]:
        """The ports P that a rule of this sandbox's scope names for ``localhost:P`` (allow or deny);
        a portless resource names none. The relay listens for raw TCP on these."""
        entries = (*self._exact.get(LOOPBACK_NAME, ()), *self._patterns)
        return {pattern.port for _, rule, pattern in entries
                if pattern.port is not None and rule.applies_to in ("all", sandbox)
                and pattern.matches(LOOPBACK_NAME, pattern.port)}

    def decide(self, host: str, port: int, sandbox: str | None = None) -> Verdict:
        """The :func:`deciding` rule among those matching, in rule order; no match is a deny.
        ``sandbox`` selects sandbox-scoped rules too."""
        requested = host.strip().lower().rstrip(".").strip("[]")
        norm = normalize_host(host)
        normalized = f"{_bracket(norm)}:{port}"
        hits = sorted(
            (entry for entry in (*self._exact.get(norm, ()), *self._patterns)
             if entry.rule.applies_to in ("all", sandbox) and entry.pattern.matches(norm, port)),
            key=lambda entry: entry.order,
        )
        decided = deciding(hits)
        if decided is None:
            return Verdict(False, requested, port, normalized)
        return Verdict(decided.decision == "allow", requested, port, normalized, decided.rule, decided.pattern.text)
