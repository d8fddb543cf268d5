"""The policy proxy: an asyncio HTTP/1.1 forward proxy that decides every request.

**Who is asking.** The proxy tells sandboxes apart by the listener a connection arrives on,
never by anything the client sends. Each sandbox gets its own Unix socket
(``<home>/sbx/run/sandboxes/<name>/proxy.sock``); the namespaced tier binds only that
socket's folder into the sandbox, so a guest can reach no other sandbox's socket and cannot
claim another identity, even if it kills its relay and talks to the socket itself. The
process tier gets a per-sandbox loopback TCP port instead (any host process could connect
to any port: that tier is advisory, and says so). A control socket (health, ``sync``) and a
main loopback TCP port (tests, benchmarks, host-side clients) are audited with no sandbox.
``sync`` reconciles the listeners with the sandboxes on disk; ``sbx exec`` calls it when its
sandbox's socket is missing.

**Per request.** h11 parses both sides. Absolute-form requests and ``CONNECT`` tunnels are
decided by :mod:`.policy` *before* any DNS lookup; each request on a kept-alive connection
is decided on its own (a pipelined request to a denied host never reaches it). Allowed
``localhost:P`` (which is what ``host.docker.internal:P`` is matched as) connects to the
host's ``127.0.0.1:P``; a *name* that resolves to a loopback address is refused, so a
wildcard rule cannot be used to reach host services. Upstream requests carry ``Connection:
close``; bodies stream both ways chunk by chunk. Blocked → 403 ``text/plain`` in sbx's shape;
upstream unreachable → 502 with a one-line reason. Every request, allowed or not, leaves
exactly one audit record, written when it ends (also when the upstream dies mid-stream).
Raw TCP to ``host.docker.internal:P`` (sbx ≥ 0.30) arrives from the in-sandbox relay as a
``CONNECT`` marked ``Labkit-Raw-TCP``: the same decision and tunnel, one record with method ``TCP``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11

from . import audit, store, unixsock
from .policy import Decision, PolicyError, normalize_host
from .rules import LivePolicy

CHUNK = 65536
CONNECT_TIMEOUT = 10.0
IDLE_TIMEOUT = 120.0  # between two requests on a kept-alive client connection
# Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus proxy credentials.
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization",
              b"proxy-authenticate", b"te", b"trailer", b"upgrade"}
REASONS = {200: b"OK", 400: b"Bad Request", 403: b"Forbidden", 502: b"Bad Gateway"}
RAW_TCP_HEADER = b"labkit-raw-tcp"  # sent by relay.py with a raw-TCP CONNECT; the record's method is TCP


class _ClientGone(Exception):
    """The client closed its side mid-request."""


@dataclass
class _Record:
    """An audit record being filled in while the request runs."""

    sandbox: str | None
    method: str
    url: str
    host: str = ""
    port: int = 0
    normalized: str = ""
    decision: str = "deny"
    rule: dict[str, str] = field(default_factory=lambda: {"id": "default-deny", "text": "no matching allow rule"})
    status: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    error: str = ""
    ts: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))
    t0: float = field(default_factory=time.monotonic)
    written: bool = False  # appended to the audit log already

    def decided(self, verdict: Decision) -> None:
        self.host, self.port, self.normalized = verdict.host, verdict.port, verdict.normalized
        self.decision = verdict.decision
        if verdict.rule is not None:
            rule = verdict.rule
            self.rule = {"id": rule.id, "name": rule.name,
                         "text": f"{rule.decision} {verdict.resource}" + (
                             f" (sandbox {rule.applies_to})" if rule.applies_to != "all" else "")}

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ts": self.ts, "sandbox": self.sandbox, "method": self.method, "url": self.url,
            "host": self.host, "port": self.port, "normalized": self.normalized, "decision": self.decision,
            "rule": self.rule, "status": self.status, "bytes_up": self.bytes_up, "bytes_down": self.bytes_down,
            "duration_ms": round((time.monotonic() - self.t0) * 1000, 3),
        }
        if self.error:
            data["error"] = self.error
        return data


class _Side:
    """One HTTP connection (client or upstream) driven through an h11 state machine."""

    def __init__(self, role: type[h11.CLIENT] | type[h11.SERVER], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.conn = h11.Connection(role)
        self.reader, self.writer = reader, writer
        self.method = b""  # of the request being served (a HEAD response has no body)

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.reader.read(CHUNK)
            except ConnectionError:
                data = b""
            self.conn.receive_data(data)

    async def send(self, *events: Any) -> None:
        out = b"".join(self.conn.send(ev) or b"" for ev in events)
        self.writer.write(out)
        await self.writer.drain()


def _split_authority(authority: str) -> tuple[str, int]:
    parts = urlsplit("//" + authority)
    if not parts.hostname or parts.port is None:
        raise ValueError(f"CONNECT needs host:port, got '{authority}'")
    return parts.hostname, parts.port


def _parse_target(method: str, target: str) -> tuple[str, int, str]:
    """(host, port, path) of an absolute-form or CONNECT request; ValueError otherwise."""
    if method == "CONNECT":
        host, port = _split_authority(target)
        return host, port, ""
    parts = urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("this is a forward proxy: send absolute-form http:// requests, or CONNECT for https")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, path


def _reason(exc: BaseException) -> str:
    """A short reason for a failed connect ("connection refused"), not asyncio's long message."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:.0f} s"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_loopback or ip.is_unspecified


class ProxyServer:
    """The listeners, the live policy and the audit log of one proxy process."""

    def __init__(self, run_dir: Path, tcp_port: int = 0, audit_path: Path | None = None) -> None:
        self.run_dir = run_dir
        self.requested_port = tcp_port
        self.audit_path = audit_path or audit.log_path()
        self.audit = audit.Writer(self.audit_path)
        self.policy = LivePolicy()
        self.servers: dict[str, list[asyncio.Server]] = {}
        self.main: list[asyncio.Server] = []
        self.port = 0
        self.closed = asyncio.Event()

    # ---- listeners -------------------------------------------------------------------------
    async def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        control = unixsock.bind(self.run_dir / "control.sock")
        self.main.append(await asyncio.start_unix_server(
            lambda r, w: self._connection(r, w, None, control=True), sock=control))
        tcp = await asyncio.start_server(lambda r, w: self._connection(r, w, None), "127.0.0.1", self.requested_port)
        self.main.append(tcp)
        self.port = tcp.sockets[0].getsockname()[1]
        _write_atomic(self.run_dir / "port", f"{self.port}\n")
        await self.sync()

    async def sync(self) -> dict[str, dict[str, Any]]:
        """Open a socket and a port for every sandbox on disk, close those of removed ones."""
        names = {sb.name for sb in store.all_sandboxes()}
        for gone in set(self.servers) - names:
            for server in self.servers.pop(gone):
                server.close()
            folder = self._sandbox_dir(gone)
            for item in ("proxy.sock", "port"):
                (folder / item).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
        for name in sorted(names - set(self.servers)):
            folder = self._sandbox_dir(name)
            folder.mkdir(parents=True, exist_ok=True)
            sock = unixsock.bind(folder / "proxy.sock")
            os.chmod(folder / "proxy.sock", 0o666)  # the guest may run as another uid
            unix = await asyncio.start_unix_server(
                lambda r, w, n=name: self._connection(r, w, n), sock=sock)
            tcp = await asyncio.start_server(lambda r, w, n=name: self._connection(r, w, n), "127.0.0.1", 0)
            self.servers[name] = [unix, tcp]
            _write_atomic(folder / "port", f"{tcp.sockets[0].getsockname()[1]}\n")
        return {name: {"socket": str(self._sandbox_dir(name) / "proxy.sock"),
                       "port": servers[1].sockets[0].getsockname()[1]}
                for name, servers in self.servers.items()}

    def _sandbox_dir(self, name: str) -> Path:
        return self.run_dir / "sandboxes" / name

    async def close(self) -> None:
        for server in [*self.main, *(s for group in self.servers.values() for s in group)]:
            server.close()
        (self.run_dir / "control.sock").unlink(missing_ok=True)
        (self.run_dir / "port").unlink(missing_ok=True)
        for name in list(self.servers):
            (self._sandbox_dir(name) / "proxy.sock").unlink(missing_ok=True)
        self.closed.set()

    # ---- one client connection -------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          sandbox: str | None, control: bool = False) -> None:
        client = _Side(h11.SERVER, reader, writer)
        try:
            while True:
                async with asyncio.timeout(IDLE_TIMEOUT):  # an idle kept-alive connection is closed
                    event = await client.next_event()
                if not isinstance(event, h11.Request):
                    break
                if not await self._request(client, event, sandbox, control):
                    break
                if client.conn.our_state is not h11.DONE or client.conn.their_state is not h11.DONE:
                    break
                client.conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            with contextlib.suppress(Exception):
                await self._plain(client, exc.error_status_hint, f"Bad request: {exc}\n", close=True)
        except (ConnectionError, TimeoutError, _ClientGone, h11.LocalProtocolError):
            pass
        finally:
            writer.close()

    async def _request(self, client: _Side, req: h11.Request, sandbox: str | None, control: bool) -> bool:
        """Handle one request; True when the client connection may carry another."""
        client.method = req.method
        method = req.method.decode("ascii", "replace")
        target = req.target.decode("latin-1")
        if control and target.startswith("/_labkit/"):
            return await self._control(client, method, target)
        record = _Record(sandbox, method, target)
        if method == "CONNECT" and _raw_tcp(req):
            record.method = "TCP"  # the relay's raw-TCP connection to host.docker.internal:P
        try:
            try:
                host, port, path = _parse_target(method, target)
                verdict = self.policy.get().decide(host, port, sandbox)
            except (ValueError, PolicyError) as exc:
                record.rule = {"id": "bad-request", "text": str(exc)}
                return await self._refuse(client, 400, f"Bad request: {exc}\n", True, record)
            record.decided(verdict)
            body = _has_body(req)
            if not body:  # a zero-length body: h11 yields its end without reading
                await client.next_event()
            if not verdict.allowed:
                return await self._refuse(client, 403, verdict.block_message(), body, record)
            opened = await self._open_upstream(verdict, record)
            if isinstance(opened, str):
                return await self._refuse(client, record.status or 502, opened, body, record)
            up_reader, up_writer = opened
            try:
                if method == "CONNECT":
                    await self._tunnel(client, up_reader, up_writer, record)
                    return False
                return await self._forward(client, req, host, port, path, body, up_reader, up_writer, record)
            finally:
                up_writer.close()
        finally:
            self._log(record)

    def _log(self, record: _Record) -> None:
        """Append the record, once. Called before the response's last byte goes out, so a client
        that has its whole answer (and the notebook that ran it) already finds the record."""
        if not record.written:
            record.written = True
            self.audit.append(record.as_json())

    async def _open_upstream(self, verdict: Decision, record: _Record
                             ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | str:
        """Connect (policy already passed); a string is the error body to send instead."""
        norm = normalize_host(verdict.host)
        try:
            literal = ipaddress.ip_address(norm)
        except ValueError:
            literal = None
        if norm == "localhost":
            addresses = ["127.0.0.1"]
        elif literal is not None:
            addresses = [str(literal)]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    verdict.host, verdict.port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                return f"Bad gateway: lookup {verdict.host}: no such host ({exc.strerror})\n"
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
            if any(_loopback(a) for a in addresses):
                record.decision, record.status = "deny", 403
                record.rule = {"id": "loopback-guard", "text": f"{verdict.host} resolves to a loopback address"}
                return (f"Blocked by network policy: domain {verdict.target}\n"
                        f"  detail: {verdict.host} resolves to a loopback address; allow localhost:PORT "
                        f"and use host.docker.internal:PORT to reach a host service\n")
        last = ""
        for address in addresses:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    return await asyncio.open_connection(address, verdict.port)
            except (TimeoutError, OSError) as exc:
                last = _reason(exc)
        return f"Bad gateway: could not connect to {verdict.normalized} ({last.lower()})\n"

    # ---- responses the proxy makes itself ----------------------------------------------------
    async def _plain(self, client: _Side, status: int, text: str, close: bool = False,
                     record: _Record | None = None) -> int:
        """Send a text/plain response of our own (``record`` is logged first); returns the body size sent."""
        body = text.encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                   (b"x-content-type-options", b"nosniff")]
        if close:
            headers.append((b"connection", b"close"))
        events: list[Any] = [h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b""))]
        head = client.method == b"HEAD"
        if not head:
            events.append(h11.Data(data=body))
        if record is not None:
            # a raw-TCP guest gets a reset, not this body (the relay reads it)
            record.status, record.bytes_down = status, 0 if head or record.method == "TCP" else len(body)
            self._log(record)
        await client.send(*events, h11.EndOfMessage())
        return 0 if head else len(body)

    async def _refuse(self, client: _Side, status: int, text: str, close: bool, record: _Record) -> bool:
        """403 / 400 / 502 made by the proxy; a request with a body is not drained: we close."""
        await self._plain(client, status, text, close=close, record=record)
        return not close and _reusable(client)

    async def _control(self, client: _Side, method: str, target: str) -> bool:
        if target == "/_labkit/health":
            payload: Any = {"pid": os.getpid(), "port": self.port, "sandboxes": sorted(self.servers)}
        elif target == "/_labkit/sync" and method == "POST":
            payload = await self.sync()
        else:
            await self._plain(client, 400, f"unknown control request {method} {target}\n", close=True)
            return False
        body = json.dumps(payload).encode()
        await client.send(h11.Response(status_code=200, reason=b"OK", headers=[
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]),
            h11.Data(data=body), h11.EndOfMessage())
        if client.conn.their_state is h11.SEND_BODY:
            await client.next_event()
        return _reusable(client)

    # ---- relaying ------------------------------------------------------------------------------
    async def _forward(self, client: _Side, req: h11.Request, host: str, port: int, path: str, body: bool,
                       up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, record: _Record) -> bool:
        upstream = _Side(h11.CLIENT, up_reader, up_writer)
        headers = [(k, v) for k, v in req.headers if k not in HOP_BY_HOP]
        if not any(k == b"host" for k, _ in headers):
            headers.append((b"host", f"{host}:{port}".encode()))
        headers.append((b"connection", b"close"))
        await upstream.send(h11.Request(method=req.method, target=path.encode(), headers=headers))
        upload: asyncio.Task[None] | None = None
        if body:  # concurrently: the client may wait for a 100 Continue before it sends
            upload = asyncio.create_task(self._upload(client, upstream, record))
        else:
            await upstream.send(h11.EndOfMessage())
        try:
            await self._download(client, upstream, record)
        finally:
            if upload is not None and not upload.done():
                upload.cancel()  # the response is complete; the rest of the body is not wanted
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await upload
        if upload is not None and (upload.cancelled() or upload.exception() is not None):
            return False
        return _reusable(client)

    async def _upload(self, client: _Side, upstream: _Side, record: _Record) -> None:
        while True:
            event = await client.next_event()
            if isinstance(event, h11.Data):
                record.bytes_up += len(event.data)
                await upstream.send(event)
            elif isinstance(event, h11.EndOfMessage):
                await upstream.send(h11.EndOfMessage())
                return
            else:
                raise _ClientGone()

    async def _download(self, client: _Side, upstream: _Side, record: _Record) -> None:
        started = False
        length: int | None = None  # the body's Content-Length (None: chunked or until close)
        try:
            while True:
                event = await upstream.next_event()
                if isinstance(event, h11.InformationalResponse):
                    if event.status_code != 101:
                        await client.send(event)
                elif isinstance(event, h11.Response):
                    record.status = event.status_code
                    headers = [(k, v) for k, v in event.headers if k not in HOP_BY_HOP]
                    length = _content_length(event.headers)
                    if client.method == b"HEAD" or event.status_code in (204, 304) or length == 0:
                        self._log(record)  # the head is the whole answer
                    await client.send(h11.Response(status_code=event.status_code, headers=headers,
                                                   reason=event.reason))
                    started = True
                elif isinstance(event, h11.Data):
                    record.bytes_down += len(event.data)
                    if length is not None and record.bytes_down >= length:
                        self._log(record)  # with this chunk the client has its whole answer
                    await client.send(event)
                elif isinstance(event, h11.EndOfMessage):
                    self._log(record)
                    await client.send(h11.EndOfMessage())
                    return
                else:
                    raise h11.RemoteProtocolError("upstream closed the connection", 502)
        except h11.RemoteProtocolError as exc:
            if not started:
                record.error = f"upstream: {exc}"
                await self._plain(client, 502, f"Bad gateway: upstream {record.normalized} sent no valid response "
                                  f"({exc})\n", close=True, record=record)
                return
            record.error = "upstream closed mid-response"
            client.writer.transport.abort()  # an incomplete body must look incomplete to the client
            raise _ClientGone() from exc
        except (ConnectionError, _ClientGone) as exc:
            record.error = record.error or f"client went away ({type(exc).__name__})"
            raise _ClientGone() from exc

    async def _tunnel(self, client: _Side, up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter,
                      record: _Record) -> None:
        await client.send(h11.Response(status_code=200, reason=b"Connection established", headers=[]))
        record.status = 200
        leftover, _ = client.conn.trailing_data
        if leftover:
            record.bytes_up += len(leftover)
            up_writer.write(leftover)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await src.read(CHUNK):
                    if up:
                        record.bytes_up += len(data)
                    else:
                        record.bytes_down += len(data)
                    dst.write(data)
                    await dst.drain()
                if dst.can_write_eof():
                    dst.write_eof()
            except (ConnectionError, OSError):
                dst.transport.abort()

        await asyncio.gather(pipe(client.reader, up_writer, True), pipe(up_reader, client.writer, False))


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _has_body(req: h11.Request) -> bool:
    for name, value in req.headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _raw_tcp(req: h11.Request) -> bool:
    """A tunnel the in-sandbox relay opened for raw TCP (a guest may only mislabel its own records)."""
    return any(name == RAW_TCP_HEADER for name, _ in req.headers)


def _reusable(client: _Side) -> bool:
    """Both sides of the exchange complete, so the client connection can carry another request."""
    return client.conn.our_state is h11.DONE and client.conn.their_state is h11.DONE


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def serve(run_dir: Path, tcp_port: int = 0) -> None:
    server = ProxyServer(run_dir, tcp_port)
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.close()))
    print(f"policy proxy ready: unix {run_dir / 'control.sock'}, tcp 127.0.0.1:{server.port}, "
          f"audit {server.audit_path}", flush=True)
    await server.closed.wait()


def main(argv: list[str] | None = None) -> int:
    from .service import run_dir

    parser = argparse.ArgumentParser(prog="python -m labkit.sbx.proxy", description="Run the policy proxy.")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("LABKIT_PROXY_PORT", "0") or 0),
                        help="loopback TCP port of the main listener (0 = any free port)")
    args = parser.parse_args(argv)
    try:  # uvloop, when installed, roughly halves the proxy's own cost per request
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    from .._core import paths
    from .._core.daemon import exit_when_folder_gone

    exit_when_folder_gone(paths.home())
    runner(serve(run_dir(), args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
