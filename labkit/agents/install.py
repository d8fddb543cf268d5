"""Where the pinned coding agents are, and which version each one reports.

``scripts/setup.sh`` (``make lab``) installs Codex and Claude Code from npm into the project's
``.agents/`` prefix at the versions in ``versions.json``; this module reads the same file, so
the pins are written once. A sandbox mounts ``prefix()`` read-only and runs ``executable()``:
the native binary each npm package ships, so no Node is needed to run an agent.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .. import fixes
from .._core import paths

PREFIX_ENV = "LABKIT_AGENTS_PREFIX"


class NotInstalled(RuntimeError):
    """An agent is missing; the message is one line and carries the fix."""


@dataclass(frozen=True)
class Agent:
    """One pinned agent: its id here, its npm package, the pinned version and its command."""

    name: str
    package: str
    version: str
    command: str


@cache
def pins() -> dict[str, Agent]:
    """The agents of ``versions.json`` by id (``codex``, ``claude``)."""
    data = json.loads((Path(__file__).parent / "versions.json").read_text())
    return {name: Agent(name, d["package"], d["version"], d["command"]) for name, d in data.items()}


def prefix() -> Path:
    """The npm prefix: ``$LABKIT_AGENTS_PREFIX``, else ``.agents/`` in the course checkout (else in LABKIT_HOME)."""
    if os.environ.get(PREFIX_ENV):
        return Path(os.environ[PREFIX_ENV]).expanduser()
    root = paths.repo_root()
    return root / ".agents" if root else paths.home() / "agents"


def _package_dir(package: str) -> Path:
    return prefix() / "node_modules" / package


def executable(name: str) -> Path | None:
    """The agent's native binary inside the prefix, or None when it is not installed."""
    agent = pins()[name]
    if name == "codex":  # the wrapper's platform package: @openai/codex-linux-x64/vendor/<triple>/bin/codex
        found = sorted(prefix().glob("node_modules/@openai/codex-*/vendor/*/bin/codex"))
        return found[0] if found else None
    path = _package_dir(agent.package) / "bin" / "claude.exe"  # Claude Code's postinstall puts the binary here
    return path if path.is_file() and os.access(path, os.X_OK) else None


def require(name: str) -> Path:
    """``executable(name)``, or ``NotInstalled`` with the fix."""
    path = executable(name)
    if path is None:
        agent = pins()[name]
        raise NotInstalled(
            f"{agent.package} {agent.version} is not installed in {prefix()}: run {fixes.INSTALL_AGENTS}")
    return path


def installed_version(name: str) -> str | None:
    """The version npm installed (its package.json), without running anything."""
    try:
        return json.loads((_package_dir(pins()[name].package) / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def version(name: str, timeout: float = 20.0) -> str:
    """The version the binary itself reports (``codex --version`` → ``codex-cli 0.171.0`` → ``0.171.0``)."""
    exe = require(name)
    try:
        proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NotInstalled(f"{exe} --version failed ({exc}): run {fixes.INSTALL_AGENTS}") from exc
    match = re.search(r"\d+\.\d+\.\d+\S*", proc.stdout)
    if proc.returncode != 0 or not match:
        said = (proc.stdout + proc.stderr).strip()[:120]
        raise NotInstalled(f"{exe} --version said {said!r}: run {fixes.INSTALL_AGENTS}")
    return match.group(0)
