"""The coding agents an embedded sandbox runs: which binary, how it gets on PATH, read-only.

``sbx create codex PATH`` / ``sbx create claude PATH`` make a sandbox whose agent is on ``PATH``.
The agents are the pinned npm packages in the project's prefix (``labkit.agents.install``:
``.agents/``, installed by ``make lab``). Measured on Codex 0.171.0 and Claude Code 2.1.332,
neither needs Node at run time: ``codex`` is a static musl binary (npm's ``codex.js`` only
execs it) and ``claude`` is a native glibc binary (the package's postinstall puts it at
``bin/claude.exe``). So a sandbox gets one folder of its own, ``<sandbox>/agent-bin``, holding
a single link ``codex`` (or ``claude``) to that binary, first on its PATH; in the namespaced
tier that folder and the whole prefix are bound read-only, so the guest cannot modify the agent
(nor, with only its own agent linked, start the other one). The agent's state (``~/.codex``,
``~/.claude``) lives in the sandbox's persistent home.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import fixes
from ..agents import install
from .store import Sandbox, SandboxError

# Folders of each agent's own state, created in the sandbox's home (persist like the rest of it).
HOME_DIRS = {"codex": ".codex", "claude": ".claude"}
PREFIX_ENV = install.PREFIX_ENV  # where the agents are installed (tests point it at a fake or empty prefix)
LINKS_IN_GUEST = "/run/labkit/bin"


@dataclass(frozen=True)
class AgentInstall:
    """One installed agent: its command, the binary it links to, the prefix to bind read-only."""

    agent: str
    executable: str  # real path of the native binary
    prefix: str  # real path of the install prefix


def is_agent(agent: str) -> bool:
    return agent in HOME_DIRS


def prefix() -> str:
    return os.path.realpath(install.prefix())


def find(agent: str) -> AgentInstall | None:
    """The installed agent, or None when it is missing (or ``agent`` is ``shell``)."""
    if not is_agent(agent):
        return None
    exe = install.executable(agent)
    if exe is None:
        return None
    return AgentInstall(agent, os.path.realpath(exe), prefix())


def require(agent: str) -> AgentInstall | None:
    """``find`` for ``sbx create`` and ``sbx run``: one clear line when the agent is not installed."""
    found = find(agent)
    if found is None and is_agent(agent):
        raise SandboxError(f"ERROR: the {agent} agent is not installed: run {fixes.MAKE_LAB}")
    return found


def command(agent: str) -> str:
    return install.pins()[agent].command


def link_folder(sandbox: Sandbox, found: AgentInstall) -> Path:
    """``<sandbox>/agent-bin/<command>`` → the binary (refreshed when the install moved)."""
    folder = sandbox.dir / "agent-bin"
    folder.mkdir(exist_ok=True)
    link = folder / command(found.agent)
    if not link.is_symlink() or os.readlink(link) != found.executable:
        tmp = folder / f".{link.name}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(found.executable)
        os.replace(tmp, link)
    return folder


def guest_env(agent: str, home: str) -> dict[str, str]:
    """The agent's variables inside: its state in the persistent home; no self-update of a read-only install."""
    if agent == "codex":
        return {"CODEX_HOME": f"{home}/.codex"}
    if agent == "claude":
        return {"DISABLE_AUTOUPDATER": "1"}  # ~/.claude and ~/.claude.json are its defaults
    return {}


def make_home(agent: str, home: Path) -> None:
    """Create the agent's state folder in the sandbox's home at ``sbx create``."""
    if agent in HOME_DIRS:
        (home / HOME_DIRS[agent]).mkdir(exist_ok=True)
