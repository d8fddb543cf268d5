"""`labkit up | down | status` for the embedded model server (the ``dmr`` background service).

Same contract as every lab service: ``start() -> str`` (idempotent), ``stop() -> str``,
``status() -> (running, one line)``. A taken port is explained: a real Docker Model Runner
there means the learner should use live mode instead.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import NamedTuple

from .. import fixes
from .._core import paths
from .._core.daemon import Service, ServiceError, python_module
from ..runtime.probes import EMBEDDED_HEADER, port_free, port_holder, probe_dmr

NAME = "dmr"


def base_url(port: int | None = None) -> str:
    return f"http://127.0.0.1:{port or paths.dmr_port()}"


def _get(port: int, path: str, timeout: float = 0.5) -> tuple[int, dict[str, str], bytes] | None:
    """A tiny GET with the standard library (fast to import: it is polled during start)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def ours_answers(port: int) -> bool:
    """Does labkit's embedded server (not something else) answer on ``port``?"""
    got = _get(port, "/")
    return got is not None and got[0] == 200 and got[1].get(EMBEDDED_HEADER) == "1"


def service(port: int | None = None) -> Service:
    port = port or paths.dmr_port()
    return Service(
        name=NAME,
        argv=python_module("labkit.dmr.server", "--host", "127.0.0.1", "--port", str(port)),
        ready=lambda: ours_answers(port),
    )


def _port_taken(port: int) -> ServiceError:
    probe = probe_dmr(port)
    if probe.real:
        return ServiceError(f"port {port} is taken by a real Docker Model Runner ({probe.detail})",
                            f"use it: live mode, {fixes.USE_LIVE} (or set LABKIT_DMR_PORT to another port)")
    if probe.embedded:
        return ServiceError(f"port {port} is taken by another labkit embedded model server ({port_holder(port)}), "
                            "probably started with another LABKIT_HOME",
                            "run `labkit down` there, or set LABKIT_DMR_PORT")
    return ServiceError(f"port {port} is taken by {port_holder(port)}",
                        "free it, or set LABKIT_DMR_PORT to a free port")


def start() -> str:
    """Start the model server in the background unless it runs; one line says where."""
    port = paths.dmr_port()
    svc = service(port)
    pid = svc.pid()
    if pid is None and not port_free(port):
        raise _port_taken(port)
    died = svc.ended_unexpectedly()
    pid, started, seconds = svc.start()
    if not started:
        crashed = trouble(port)
        note = f" · {crashed.line()}" if crashed else ""
        return f"model server: already running at {base_url(port)} (pid {pid}){note}"
    again = f" · started again: it had died without `labkit down` ({died[:120]})" if died is not None else ""
    return (f"model server: {base_url(port)} (pid {pid}, answering after {seconds:.2f} s){warm_up(port)}"
            f" · log {svc.logfile}{again}")


WARM_UP_TIMEOUT = 60.0


def warm_up(port: int, timeout: float = WARM_UP_TIMEOUT) -> str:
    """One 1-token chat completion right after start, so the learner's first request is fast.

    The server loads the pulled model in the background, but the first chat completion still
    pays for the load and llama.cpp's first-batch setup (measured on 2 cores: 0.8-0.9 s instead
    of 0.3 s). Returns a suffix for the start line ("" when no model is pulled yet).
    """
    got = _get(port, "/engines/v1/models", timeout=2.0)
    try:
        ids = [str(m["id"]) for m in json.loads(got[2])["data"]] if got and got[0] == 200 else []
    except (ValueError, KeyError, TypeError):
        ids = []
    if not ids:
        return ""
    body = json.dumps({"model": ids[0], "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 1})
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/engines/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        ok = resp.status == 200
    except (OSError, http.client.HTTPException):
        ok = False
    finally:
        conn.close()
    if not ok:
        why = trouble(port)
        return f" · warm-up failed: {why.line()}" if why else " · warm-up failed (the first request will be slower)"
    return f" · {ids[0]} warmed up in {time.monotonic() - t0:.2f} s"


def engine_state(port: int | None = None) -> tuple[str, str] | None:
    """The llama.cpp backend's state from ``/engines/status`` (``("Error", why)``), None if unreadable."""
    got = _get(port or paths.dmr_port(), "/engines/status", timeout=2.0)
    if got is None or got[0] != 200:
        return None
    try:
        state, _, detail = str(json.loads(got[2])["llama.cpp"]).partition(": ")
    except (ValueError, KeyError, TypeError):
        return None
    return (state, detail) if state else None


class Trouble(NamedTuple):
    """What went wrong with the embedded model server, and what to run next."""

    message: str
    fix: str

    def line(self) -> str:
        return f"{self.message} · {self.fix}"


def trouble(port: int | None = None) -> Trouble | None:
    """What went wrong with the embedded model server; None when nothing did (or it was stopped).

    Two cases are told apart from "not started": the server died without `labkit down` (its log's
    last line says how), and the server is up but its llama.cpp engine crashed (`/engines/status`).
    """
    port = port or paths.dmr_port()
    svc = service(port)
    died = svc.ended_unexpectedly()
    if died is not None:
        return Trouble(f"the embedded model server died without `labkit down` (its log's last line: {died[:160]}; "
                       f"log {svc.logfile})", fixes.START_AGAIN)
    state = engine_state(port) if svc.pid() is not None else None
    if state and state[0] == "Error":
        return Trouble(f"the model server's llama.cpp engine crashed ({state[1].rpartition('exit status: ')[2]}; "
                       f"log {svc.logfile})", fixes.ENGINE_CRASH_EMBEDDED)
    return None


def stop() -> str:
    stopped = service().stop()
    if stopped:
        return f"model server: stopped (pulled models stay in {paths.state_dir('models')})"
    return "model server: not running"


def loaded_models(port: int | None = None) -> list[str]:
    """Names of the models the running server has loaded (empty when none or not running)."""
    got = _get(port or paths.dmr_port(), "/engines/ps", timeout=2.0)
    if got is None or got[0] != 200:
        return []
    try:
        return [str(r.get("model_name", "?")) + (" (loading)" if r.get("loading") else "") for r in json.loads(got[2])]
    except (ValueError, AttributeError):
        return []


def status() -> tuple[bool, str]:
    port = paths.dmr_port()
    svc = service(port)
    pid = svc.pid()
    if pid is None:
        died = trouble(port)
        if died:
            return False, f"model server: {died.line()}"
        return False, f"model server: not running (start it: {fixes.LABKIT_UP}) · log {svc.logfile}"
    if not ours_answers(port):
        return False, f"model server: pid {pid} does not answer on {base_url(port)}; see its log {svc.logfile}"
    crashed = trouble(port)
    if crashed:
        return False, f"model server: {base_url(port)} · pid {pid} · {crashed.line()}"
    models = ", ".join(loaded_models(port)) or "none loaded yet"
    return True, f"model server: {base_url(port)} · pid {pid} · model: {models} · log {svc.logfile}"
