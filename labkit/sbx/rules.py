"""The persistent network policy: a preset plus local rules, in one JSON file.

Only the preset's name and the local rules are stored; the preset's rules come from
``baseline.json`` each time, so the baseline can change with labkit. Every change is a
read-modify-write under a file lock followed by an atomic rename, so concurrent ``sbx
policy`` calls never lose a rule and the proxy never reads half a file. A missing file means
the initial state: ``balanced`` with no local rules (the embedded lab starts initialised).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib import resources as package_files
from pathlib import Path
from typing import Any

from .._core import paths
from ..records import PolicyRule, RuleDecision
from .policy import Policy, PolicyError, Verdict, parse_resource, parse_resources, parse_target

PRESETS = ("allow-all", "balanced", "deny-all")
INITIAL_PRESET = "balanced"
_PRESET_NS = uuid.UUID("6f1c7a52-53b1-4d0e-9a43-1f6c0b7e2d11")


def store_path() -> Path:
    return paths.state_dir("sbx") / "policy.json"


@dataclass(frozen=True)
class PolicyState:
    """What ``sbx policy ls`` shows: the preset and every rule (preset rules first)."""

    preset: str
    local: tuple[PolicyRule, ...]

    @property
    def rules(self) -> tuple[PolicyRule, ...]:
        return preset_rules(self.preset) + self.local

    def policy(self) -> Policy:
        return Policy(self.rules)


@cache
def _baseline() -> dict[str, Any]:
    text = package_files.files("labkit.sbx").joinpath("baseline.json").read_text()
    return json.loads(text)["presets"]


@cache
def preset_rules(preset: str) -> tuple[PolicyRule, ...]:
    """The rules a preset stands for, with ids stable across runs."""
    return tuple(
        PolicyRule(
            id=str(uuid.uuid5(_PRESET_NS, f"{preset}/{item['name']}")),
            decision=item["decision"],
            resources=parse_resources(",".join(item["resources"])),
            name=item["name"],
            origin="preset",
        )
        for item in _baseline()[preset]
    )


def _rule_from_json(item: dict[str, Any]) -> PolicyRule:
    return PolicyRule(
        id=item["id"], decision=item["decision"], resources=tuple(item["resources"]),
        applies_to=item.get("applies_to", "all"), name=item.get("name", ""), origin="local",
    )


def _rule_to_json(rule: PolicyRule) -> dict[str, Any]:
    return {"id": rule.id, "name": rule.name, "decision": rule.decision,
            "resources": list(rule.resources), "applies_to": rule.applies_to}


def load() -> PolicyState:
    """The current state (the initial one when nothing was stored yet)."""
    try:
        raw = store_path().read_bytes()
    except FileNotFoundError:
        raw = b""
    return _state_from(raw)


def _state_from(raw: bytes) -> PolicyState:
    if not raw:
        return PolicyState(INITIAL_PRESET, ())
    try:
        data = json.loads(raw)
        preset = data.get("preset", INITIAL_PRESET)
        local = tuple(_rule_from_json(item) for item in data.get("rules", []))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PolicyError(f"the policy store {store_path()} is unreadable ({exc}); run: sbx policy reset") from exc
    return PolicyState(preset if preset in PRESETS else INITIAL_PRESET, local)


def _save(state: PolicyState) -> None:
    path = store_path()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = {"version": 1, "preset": state.preset, "rules": [_rule_to_json(r) for r in state.local]}
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextmanager
def _changing() -> Iterator[list[PolicyState]]:
    """Lock, load, let the caller replace ``box[0]``, save if it changed."""
    with open(paths.state_dir("sbx") / "policy.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        box = [load()]
        before = box[0]
        yield box
        if box[0] != before or not store_path().exists():
            _save(box[0])


def init(preset: str) -> PolicyState:
    """``sbx policy init PRESET``: switch the preset, keep the local rules."""
    if preset not in PRESETS:
        raise PolicyError(f"unknown preset '{preset}': choose one of {', '.join(PRESETS)}")
    with _changing() as box:
        box[0] = PolicyState(preset, box[0].local)
        return box[0]


def add(decision: RuleDecision, resources: str, sandbox: str | None = None) -> PolicyRule:
    """``sbx policy allow|deny network [--sandbox N] RES[,RES…]``: one rule, new id."""
    parsed = parse_resources(resources)
    rule_id = str(uuid.uuid4())
    rule = PolicyRule(rule_id, decision, parsed, applies_to=sandbox or "all", name=f"local:{rule_id}")
    with _changing() as box:
        box[0] = PolicyState(box[0].preset, box[0].local + (rule,))
    return rule


def remove(resource: str | None = None, rule_id: str | None = None, sandbox: str | None = None) -> list[str]:
    """``sbx policy rm network``: drop a resource from the local rules of a scope, or a rule by id.

    Returns what was removed (resources or ids); raises PolicyError when nothing matched.
    """
    scope = sandbox or "all"
    with _changing() as box:
        state = box[0]
        if rule_id is not None:
            hits = [r for r in state.local if r.id == rule_id or (len(rule_id) >= 8 and r.id.startswith(rule_id))]
            if len(hits) != 1:
                preset = any(r.id == rule_id for r in preset_rules(state.preset))
                raise PolicyError(_missing_id(rule_id, preset, state.preset, len(hits)))
            box[0] = PolicyState(state.preset, tuple(r for r in state.local if r is not hits[0]))
            return [hits[0].id]
        if resource is None:
            raise PolicyError("say what to remove: --resource RESOURCE or --id ID")
        canon = parse_resource(resource).text
        kept: list[PolicyRule] = []
        found = False
        for rule in state.local:
            if rule.applies_to == scope and canon in rule.resources:
                found = True
                rest = tuple(r for r in rule.resources if r != canon)
                if rest:
                    kept.append(PolicyRule(rule.id, rule.decision, rest, rule.applies_to, rule.name, rule.origin))
                continue
            kept.append(rule)
        if not found:
            in_preset = any(canon in r.resources for r in preset_rules(state.preset))
            where = f" for sandbox '{sandbox}'" if sandbox else ""
            hint = (f"; it comes from the {state.preset} preset: add a deny rule instead"
                    if in_preset else "; see: sbx policy ls --wide")
            raise PolicyError(f"no local rule{where} has resource '{canon}'{hint}")
        box[0] = PolicyState(state.preset, tuple(kept))
        return [canon]


def _missing_id(rule_id: str, preset: bool, preset_name: str, hits: int) -> str:
    if preset:
        return f"rule {rule_id} belongs to the {preset_name} preset; switch presets with: sbx policy init PRESET"
    if hits > 1:
        return f"rule id prefix '{rule_id}' is ambiguous; give more characters (see: sbx policy ls --wide)"
    return f"no local rule with id '{rule_id}'; see: sbx policy ls --wide"


def drop_sandbox(sandbox: str) -> int:
    """Remove the rules scoped to a sandbox that is being removed; returns how many."""
    with _changing() as box:
        kept = tuple(r for r in box[0].local if r.applies_to != sandbox)
        dropped = len(box[0].local) - len(kept)
        box[0] = PolicyState(box[0].preset, kept)
    return dropped


def reset() -> None:
    """``sbx policy reset``: delete the store; the next read is the initial ``balanced`` state."""
    with open(paths.state_dir("sbx") / "policy.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        store_path().unlink(missing_ok=True)


def check(target: str, sandbox: str | None = None) -> Verdict:
    """``sbx policy check network TARGET``: the decision the proxy would make.

    Real sbx's `check` matches ``host.docker.internal`` literally while its proxy matches it
    as ``localhost`` (docs/sbx-dmr-facts.md §1.6, SR#546); ours reports what the proxy enforces.
    """
    host, port = parse_target(target)
    return load().policy().decide(host, port, sandbox)


class LivePolicy:
    """The current policy for a long-running reader (the proxy).

    A ``stat`` per call; the small file is re-read when its signature changed, and on every
    call while its last change is recent (two changes within one timestamp tick can leave
    the signature equal). It is recompiled only when its bytes changed.
    """

    RECENT = 2.0  # seconds

    def __init__(self) -> None:
        self._path = store_path()
        self._signature: tuple[int, ...] | None = None
        self._raw: bytes | None = None
        self._policy = PolicyState(INITIAL_PRESET, ()).policy()

    def get(self) -> Policy:
        try:
            st = os.stat(self._path)
            signature: tuple[int, ...] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            recent = time.time() - st.st_mtime < self.RECENT
        except FileNotFoundError:
            signature, recent = (), False
        if signature == self._signature and not recent:
            return self._policy
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            raw = b""
        if raw != self._raw:
            try:
                self._policy = _state_from(raw).policy()
                self._raw = raw
            except PolicyError:
                pass  # keep the last good policy; the CLI reports the broken file
        self._signature = signature
        return self._policy
