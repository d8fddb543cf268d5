"""Which component is real and which is embedded, and why.

The course has two components that can each be real or embedded: the model server (Docker
Model Runner or labkit's) and the sandbox runtime (`sbx` or labkit's). ``resolve`` decides
from the requested mode and what the probes saw; it does no I/O itself, so it is unit
tested with plain records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..errors import LabError
from .probes import DmrProbe, SbxProbe

ComponentKind = Literal["live", "embedded"]
MODES = ("live", "embedded", "auto")


class ModeError(LabError, ValueError):
    """An unknown mode name; the fix lists the valid ones."""


@dataclass(frozen=True)
class Component:
    """One component's resolution: real (live) or embedded, whether it can run, and why."""

    name: str  # "model server" | "sandboxes"
    kind: ComponentKind
    available: bool
    reason: str


@dataclass(frozen=True)
class Resolution:
    requested: str  # "live" | "embedded" | "auto"
    source: str  # where the request came from: "argument", "LABKIT_MODE", "default"
    model_server: Component
    sandboxes: Component

    @property
    def label(self) -> str:
        """'live', 'embedded', or 'mixed' (real DMR behind embedded sandboxes, say)."""
        kinds = {self.model_server.kind, self.sandboxes.kind}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def runnable(self) -> bool:
        return self.model_server.available and self.sandboxes.available

    def describe(self) -> str:
        parts = [f"{c.name}: {c.kind} ({c.reason})" for c in (self.model_server, self.sandboxes)]
        return f"mode {self.label} [{self.requested} from {self.source}] — " + "; ".join(parts)


def requested_mode(explicit: str | None = None, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The requested mode and where it came from: an argument beats LABKIT_MODE beats 'auto'."""
    env = os.environ if env is None else env
    if explicit:
        value, source = explicit, "argument"
    elif env.get("LABKIT_MODE"):
        value, source = env["LABKIT_MODE"], "LABKIT_MODE"
    else:
        value, source = "auto", "default"
    value = value.strip().lower()
    if value not in MODES:
        raise ModeError(f"unknown mode '{value}' (from {source})", f"use one of: {', '.join(MODES)}")
    return value, source


def resolve(
    explicit: str | None = None,
    *,
    dmr: DmrProbe,
    sbx: SbxProbe,
    env: Mapping[str, str] | None = None,
) -> Resolution:
    """Decide each component from the requested mode and the probes' findings."""
    requested, source = requested_mode(explicit, env)
    return Resolution(requested, source, _model_server(requested, dmr), _sandboxes(requested, sbx))


def _model_server(requested: str, dmr: DmrProbe) -> Component:
    name = "model server"
    where = f"localhost:{dmr.port}"
    if requested == "embedded":
        if dmr.real:
            return Component(name, "embedded", False,
                             f"a real Docker Model Runner holds {where}; use live mode or another LABKIT_DMR_PORT")
        return Component(name, "embedded", True, "embedded mode requested")
    if requested == "live":
        if dmr.real:
            return Component(name, "live", True, f"Docker Model Runner answers on {where}")
        return Component(name, "live", False, f"live mode requested but no Docker Model Runner answers on {where}")
    if dmr.real:
        return Component(name, "live", True, f"Docker Model Runner answers on {where}")
    if dmr.embedded:
        return Component(name, "embedded", True, f"labkit's model server already runs on {where}")
    return Component(name, "embedded", True, f"no Docker Model Runner answers on {where}")


def _sandboxes(requested: str, sbx: SbxProbe) -> Component:
    name = "sandboxes"
    if requested == "embedded":
        return Component(name, "embedded", True, "embedded mode requested")
    if requested == "live":
        if sbx.on_path and sbx.initialised:
            return Component(name, "live", True, sbx.detail or "sbx is ready")
        return Component(name, "live", False, f"live mode requested but {sbx.detail or 'sbx is not ready'}")
    if sbx.on_path and sbx.initialised:
        return Component(name, "live", True, sbx.detail or "sbx is ready")
    return Component(name, "embedded", True, sbx.detail or "sbx is not on PATH")
