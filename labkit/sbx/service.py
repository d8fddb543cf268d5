"""The policy proxy as a background service, and the endpoints sandboxes connect to.

``start``/``stop``/``status`` are the contract ``labkit up|down|status`` calls.
:func:`endpoint` is what the sandbox launcher calls before every command: it starts the
proxy if it is not running (idempotent, under the daemon's lock) and makes sure the
sandbox's own socket and port exist, asking the proxy to ``sync`` when they do not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11

from .. import fixes
from .._core import paths
from .._core.daemon import Service, ServiceError, python_module
from . import unixsock

NAME = "sbx-proxy"


def run_dir() -> Path:
    return paths.state_dir("sbx", "run")


def control_socket() -> Path:
    return run_dir() / "control.sock"


def sandbox_dir(name: str) -> Path:
    """The folder holding a sandbox's proxy socket (bound at /run/sbx in the namespaced tier)."""
    return run_dir() / "sandboxes" / name


def _port(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def tcp_port() -> int | None:
    """The proxy's main loopback TCP port (tests, benchmarks, host-side clients)."""
    return _port(run_dir() / "port")


def control(method: str, target: str, timeout: float = 10.0) -> tuple[int, Any]:
    """One request on the control socket; (status, decoded JSON body or text)."""
    sock = unixsock.connect(control_socket(), timeout)
    conn = h11.Connection(h11.CLIENT)
    try:
        head = conn.send(h11.Request(method=method, target=target, headers=[
            ("host", "labkit-proxy"), ("content-length", "0"), ("connection", "close")])) or b""
        sock.sendall(head + (conn.send(h11.EndOfMessage()) or b""))  # one write: the proxy may answer and close
        status, body = 0, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    finally:
        sock.close()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def _ready() -> bool:
    try:
        return control("GET", "/_labkit/health", 1.0)[0] == 200
    except (OSError, h11.ProtocolError):
        return False


def _service() -> Service:
    return Service(NAME, python_module("labkit.sbx.proxy", "serve"), ready=_ready)


def _where() -> str:
    port = tcp_port()
    return f"unix:{control_socket()}" + (f", tcp 127.0.0.1:{port}" if port else "")


def start() -> str:
    """Start the proxy unless it runs (raises ServiceError with the log's tail when it cannot)."""
    svc = _service()
    pid, started, seconds = svc.start()
    verb = f"started in {seconds:.2f} s" if started else "already running"
    return f"policy proxy: {verb} (pid {pid}) — {_where()}; log {svc.logfile}"


def stop() -> str:
    svc = _service()
    return "policy proxy: stopped" if svc.stop() else "policy proxy: not running"


def status() -> tuple[bool, str]:
    svc = _service()
    pid = svc.pid()
    if pid is None:
        return False, f"policy proxy: not running (start it: {fixes.LABKIT_UP}); log {svc.logfile}"
    if not _ready():
        return False, f"policy proxy: pid {pid} does not answer on {control_socket()}; log {svc.logfile}"
    return True, f"policy proxy: {_where()}, pid {pid}; log {svc.logfile}"


@dataclass(frozen=True)
class Endpoint:
    """Where one sandbox reaches the proxy: a Unix socket (in ``folder``) and a loopback port."""

    folder: Path
    port: int

    @property
    def socket(self) -> Path:
        return self.folder / "proxy.sock"


def endpoint(name: str) -> Endpoint:
    """The sandbox's endpoint, starting the proxy and opening the endpoint when needed."""
    _service().start()
    folder = sandbox_dir(name)
    port = _port(folder / "port")
    if port is None or not unixsock.answers(folder / "proxy.sock"):
        status_code, body = control("POST", "/_labkit/sync")
        port = _port(folder / "port")
        if status_code != 200 or port is None or not unixsock.answers(folder / "proxy.sock"):
            raise ServiceError(f"the policy proxy did not open an endpoint for sandbox '{name}' ({body})",
                               f"see its log: {_service().logfile}")
    return Endpoint(folder, port)


def sync() -> None:
    """Tell a running proxy that sandboxes were added or removed (no-op when it is down)."""
    if _service().pid() is not None:
        try:
            control("POST", "/_labkit/sync")
        except (OSError, h11.ProtocolError):
            pass
