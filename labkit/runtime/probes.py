"""Cheap, time-limited looks at the machine: who answers on the model port, is `sbx` there.

Every probe returns a small record and never raises: `labkit doctor`, mode resolution and
`labkit up` all decide from these records.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field

import httpx
import psutil

from .._core import paths

# The embedded model server marks every response with this header, so a probe can tell it
# apart from a real Docker Model Runner listening on the same port.
EMBEDDED_HEADER = "x-labkit-embedded"


@dataclass(frozen=True)
class DmrProbe:
    """What answers on the model API port."""

    port: int
    answering: bool
    embedded: bool = False  # True when it is labkit's own server
    models: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def real(self) -> bool:
        return self.answering and not self.embedded


def probe_dmr(port: int | None = None, timeout: float = 1.5) -> DmrProbe:
    port = port or paths.dmr_port()
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=timeout) as client:
            root = client.get(base + "/")
            embedded = EMBEDDED_HEADER in root.headers
            if not embedded and "Docker Model Runner" not in root.text:
                return DmrProbe(port, False, detail=f"something else answers on {port}: {_server(root)}")
            listing = client.get(base + "/engines/v1/models")
            models = [m.get("id", "?") for m in listing.json().get("data", [])] if listing.is_success else []
    except httpx.HTTPError as exc:
        return DmrProbe(port, False, detail=f"nothing answers on localhost:{port} ({type(exc).__name__})")
    except ValueError:
        models = []
    who = "labkit's embedded model server" if embedded else "Docker Model Runner"
    return DmrProbe(port, True, embedded, models, f"{who} answers on localhost:{port}")


def _server(resp: httpx.Response) -> str:
    server = resp.headers.get("server", "")
    first = resp.text.strip().splitlines()[0][:60] if resp.text.strip() else ""
    return ", ".join(x for x in (f"HTTP {resp.status_code}", server, repr(first) if first else "") if x)


@dataclass(frozen=True)
class SbxProbe:
    """Is the real `sbx` CLI usable here."""

    on_path: bool
    version: str = ""
    initialised: bool = False
    detail: str = ""


def real_which(name: str) -> str | None:
    """Where the real tool ``name`` is, skipping labkit's own routing shims (they are not the tool)."""
    return shutil.which(name, path=paths.without_shims(os.environ.get("PATH", "")))


def probe_sbx(timeout: float = 5.0) -> SbxProbe:
    exe = real_which("sbx")
    if not exe:
        return SbxProbe(False, detail="sbx is not on PATH")
    version = _first_line([exe, "version"], timeout)
    if version is None:
        return SbxProbe(True, detail="sbx is on PATH but `sbx version` did not answer")
    policy = _run([exe, "policy", "ls"], timeout)
    if policy is None:
        return SbxProbe(True, version, detail="`sbx policy ls` did not answer (is the daemon signed in?)")
    code, text = policy
    if code != 0 or "not been initialized" in text:
        return SbxProbe(True, version, False, "sbx policy is not initialised (run: sbx policy init balanced)")
    return SbxProbe(True, version, True, f"sbx {version} at {exe}")


def _run(argv: list[str], timeout: float) -> tuple[int, str] | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.returncode, (proc.stdout + proc.stderr)


def _first_line(argv: list[str], timeout: float) -> str | None:
    out = _run(argv, timeout)
    if out is None or out[0] != 0:
        return None
    lines = out[1].strip().splitlines()
    return lines[0].strip() if lines else ""


def docker_model_available(timeout: float = 5.0) -> tuple[bool, str]:
    """Is the `docker model` CLI plugin installed (it needs no daemon to print its version)."""
    exe = real_which("docker")
    if not exe:
        return False, "docker is not on PATH"
    out = _run([exe, "model", "version"], timeout)
    if out is None:
        return False, "`docker model version` did not answer"
    code, text = out
    if code != 0:
        first = text.strip().splitlines()[0] if text.strip() else f"exit {code}"
        return False, first[:100]
    return True, text.strip().splitlines()[0] if text.strip() else "docker model"


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_holder(port: int) -> str:
    """A short description of the process listening on ``port`` (best effort)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        conns = []
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid:
                try:
                    proc = psutil.Process(conn.pid)
                    cmd = " ".join(proc.cmdline()[:4]) or proc.name()
                    return f"pid {conn.pid} ({cmd})"
                except psutil.Error:
                    return f"pid {conn.pid}"
            return "a process of another user or namespace"
    return "an unknown process"
