"""The records both modes produce: a sandbox, a policy rule, a policy-log row, a model.

The embedded implementations build them from their own state; the live adapters parse
them out of the real CLIs' output. Notebooks and checkpoints only ever see these, which is
why the course reads the same in live and embedded mode. Also here: the audit's rule as the
embedded proxy records it, and model names as DMR's MODEL NAME column shows them (both modes'
CLIs suggest the closest one for a typo).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypedDict

RuleDecision = Literal["allow", "deny"]


@dataclass(frozen=True)
class SandboxInfo:
    """One row of `sbx ls`."""

    name: str
    agent: str
    status: str  # "running" | "stopped" (as sbx prints it)
    workspaces: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyRule:
    """One network rule of `sbx policy ls` (a rule may carry several resources)."""

    id: str
    decision: RuleDecision
    resources: tuple[str, ...]
    applies_to: str = "all"  # "all" or the sandbox name
    name: str = ""  # e.g. "default-package-managers", "local:<uuid>"
    origin: str = "local"  # "local" | "kit" | "org" | "preset"


class AuditRule(TypedDict, total=False):
    """The rule an audit record names (embedded proxy): ``id`` (``default-deny``, ``loopback-guard``,
    ``bad-request`` when no rule of the policy decided), ``name``, and ``text`` as people read it."""

    id: str
    name: str
    text: str


def rule_text(rule: AuditRule) -> str:
    """How the audit names the deciding rule: its text (``allow localhost:12434``), else its id."""
    return rule.get("text") or rule.get("id", "")


@dataclass(frozen=True)
class PolicyLogEntry:
    """One aggregated row of `sbx policy log` (per sandbox, host and rule)."""

    sandbox: str
    host: str  # "host:port"
    proxy: str  # "forward" | "transparent" | "network" | …
    rule: str  # e.g. "domain-allowed", "user-denied", "domain-blocked"
    blocked: bool
    count: int
    last_seen: datetime | None = None
    reason: str = ""  # e.g. "default-deny" (newer sbx only)


@dataclass(frozen=True)
class ModelInfo:
    """One model of the model store (`docker model ls`, `GET /models`)."""

    id: str  # "sha256:…"
    tags: tuple[str, ...]
    parameters: str = ""
    quantization: str = ""
    architecture: str = ""
    size: str = ""
    context: int | None = None

    @property
    def name(self) -> str:
        """The first tag as `docker model ls` prints it (no `docker.io/`, no `:latest`)."""
        return display_name(self.tags[0]) if self.tags else "<none>"


def display_name(tag: str) -> str:
    """DMR's MODEL NAME column: strip `docker.io/` (or `index.docker.io/`), `ai/` and `:latest`."""
    for prefix in ("index.docker.io/", "docker.io/", "ai/"):
        if tag.startswith(prefix):
            tag = tag[len(prefix):]
    return tag.removesuffix(":latest")


def close_names(name: str, known: Sequence[str], n: int = 3) -> list[str]:
    """The known model names closest to a mistyped ``name``, one spelling per model.

    Compared as DMR's MODEL NAME column shows them (no ``docker.io/``, ``ai/`` or ``:latest``, any
    case); of several spellings of one model, the first in ``known`` is suggested.
    """
    by_key: dict[str, str] = {}
    for k in known:
        by_key.setdefault(display_name(k).lower(), k)
    return [by_key[k] for k in difflib.get_close_matches(display_name(name).lower(), list(by_key), n=n, cutoff=0.6)]
