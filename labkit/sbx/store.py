"""Embedded sandboxes on disk: name rules, metadata, the persistent home, live processes.

One folder per sandbox under ``<labkit home>/sbx/sandboxes/<name>/``: ``sandbox.json``
(metadata), ``home/`` (the agent's home, kept across exec/stop/run like a VM disk),
``etc/`` (the few generated files the namespaced tier binds over /etc) and ``procs/`` (pids of
commands running in it, so ``sbx stop`` can end them). Creating the folder with ``mkdir`` is
the atomic claim on a name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from .. import fixes
from .._core import paths
from ..errors import LabError
from ..records import SandboxInfo

AGENTS = ("shell", "codex", "claude")  # codex/claude: see guest_agents
RESERVED_NAMES = ("default",)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]+$")
_NAME_RULE = ("names need at least two characters, start with a letter or number, "
              "and contain only letters, numbers, hyphens and periods")


class SandboxError(LabError):
    """A user-facing sandbox problem; ``str()`` is the message to print, worded as sbx words it
    (``ERROR: …``, the command to type inside the message)."""


class SandboxNotFound(SandboxError):
    def __init__(self, name: str) -> None:
        self.name = name
        # sbx's wording (docs/sbx-dmr-facts.md §1.1, 2026-08), with a concrete command to type.
        super().__init__(f"ERROR: no sandbox named '{name}'\n\nTo create one:\n  {fixes.create_sandbox(name)}")


def validate_name(name: str) -> str:
    if name in RESERVED_NAMES:
        raise SandboxError(f"ERROR: the sandbox name '{name}' is reserved; choose another, e.g. --name dmr-test")
    if not _NAME.match(name):
        raise SandboxError(f"ERROR: invalid sandbox name '{name}': {_NAME_RULE}")
    return name


def default_name(agent: str, workspace: str) -> str:
    """sbx's default ``<agent>-<workdir>``, with characters a name cannot hold replaced."""
    base = re.sub(r"[^A-Za-z0-9.-]+", "-", Path(workspace).name).strip("-.") or "workspace"
    return f"{agent}-{base}"


def sandboxes_dir() -> Path:
    return paths.state_dir("sbx", "sandboxes")


@dataclass(frozen=True)
class Sandbox:
    name: str
    agent: str
    workspaces: tuple[str, ...]
    status: str = "running"
    created: str = ""

    @property
    def dir(self) -> Path:
        return sandboxes_dir() / self.name

    @property
    def home(self) -> Path:
        return self.dir / "home"

    @property
    def etc(self) -> Path:
        return self.dir / "etc"

    @property
    def workspace(self) -> str:
        return self.workspaces[0]

    def info(self) -> SandboxInfo:
        return SandboxInfo(self.name, self.agent, self.status, self.workspaces)


def _meta(path: Path) -> Path:
    return path / "sandbox.json"


def _write(sandbox: Sandbox) -> None:
    data = {"name": sandbox.name, "agent": sandbox.agent, "workspaces": list(sandbox.workspaces),
            "status": sandbox.status, "created": sandbox.created}
    tmp = sandbox.dir / f".sandbox.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, _meta(sandbox.dir))


def create(name: str, agent: str, workspaces: list[str]) -> Sandbox:
    validate_name(name)
    if agent not in AGENTS:
        raise SandboxError(f"ERROR: unknown agent '{agent}': the embedded lab has {', '.join(AGENTS)}")
    folders = [_workspace(w) for w in workspaces]
    try:
        (sandboxes_dir() / name).mkdir()
    except FileExistsError:
        raise SandboxError(
            f"ERROR: a sandbox named '{name}' already exists; use it (sbx exec {name} …) "
            f"or remove it first: {fixes.remove_sandbox(name)}"
        ) from None
    # Whether `sbx create` leaves the sandbox running or stopped is UNCONFIRMED; an embedded
    # sandbox has no VM to boot, so it is ready ("running") as soon as it exists.
    sandbox = Sandbox(name, agent, tuple(folders), "running", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    sandbox.home.mkdir()
    (sandbox.dir / "procs").mkdir()
    _write(sandbox)
    return sandbox


_SYSTEM_DIRS = ("/", "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/var", "/run", "/opt")


def _workspace(path: str) -> str:
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        raise SandboxError(f"ERROR: workspace '{path}' is not a directory; give a project folder, e.g. .")
    if real in _SYSTEM_DIRS or real.startswith(("/proc", "/sys", "/dev")):
        raise SandboxError(f"ERROR: '{real}' is a system directory; give a project folder as the workspace")
    return real


def get(name: str) -> Sandbox:
    try:
        data = json.loads(_meta(sandboxes_dir() / name).read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise SandboxNotFound(name) from None
    except (OSError, ValueError) as exc:
        raise SandboxError(f"ERROR: the record of sandbox '{name}' is damaged ({exc}); "
                           f"remove it: {fixes.remove_sandbox(name)}") from exc
    return Sandbox(data["name"], data["agent"], tuple(data["workspaces"]), data.get("status", "stopped"),
                   data.get("created", ""))


def all_sandboxes() -> list[Sandbox]:
    found = []
    for entry in sorted(sandboxes_dir().iterdir()):
        if _meta(entry).is_file():
            try:
                found.append(get(entry.name))
            except SandboxError:
                continue
    return found


def set_status(sandbox: Sandbox, status: str) -> Sandbox:
    if sandbox.status == status:
        return sandbox
    updated = replace(sandbox, status=status)
    _write(updated)
    return updated


def delete(sandbox: Sandbox) -> None:
    shutil.rmtree(sandbox.dir, ignore_errors=True)


def register_process(sandbox: Sandbox, pid: int) -> None:
    """Remember a process running in the sandbox (pid + start time, so a reused pid is not ours)."""
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        return
    live_processes(sandbox)  # drops the entries of commands that ended
    procs = sandbox.dir / "procs"
    procs.mkdir(exist_ok=True)
    (procs / str(pid)).write_text(f"{started!r}\n")


def live_processes(sandbox: Sandbox) -> list[psutil.Process]:
    """Processes registered for the sandbox that still run; stale entries are dropped."""
    alive = []
    procs = sandbox.dir / "procs"
    for entry in procs.iterdir() if procs.is_dir() else ():
        try:
            proc = psutil.Process(int(entry.name))
            if abs(proc.create_time() - float(entry.read_text())) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
                continue
        except (psutil.Error, ValueError, OSError):
            pass
        entry.unlink(missing_ok=True)
    return alive
