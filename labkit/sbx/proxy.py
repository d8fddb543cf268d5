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

**Per request.** llhttp (``httptools``, the C parser uvicorn uses, in its strict mode) parses
both sides, plus the checks h11 made: a message with both ``Content-Length`` and
``Transfer-Encoding``, a repeated or malformed length, an obs-fold, a bare CR or LF, or an
HTTP/1.1 request without exactly one ``Host`` is a 400; a transfer coding other than
``chunked`` a 501; a head of over 16 KiB a 431. The proxy frames every message it sends
itself, so a body ends where the parser says it ends, never where a peer hoped. Absolute-form
requests and ``CONNECT`` tunnels are decided by :mod:`.policy` *before* any DNS lookup; each
request on a kept-alive connection is decided on its own (a pipelined request to a denied host
never reaches it). Allowed ``localhost:P`` (which is what ``host.docker.internal:P`` is
matched as) connects to the host's ``127.0.0.1:P``; a *name* that resolves to a loopback
address is refused, so a wildcard rule cannot be used to reach host services. Upstream
requests carry ``Connection: close``; bodies stream both ways chunk by chunk. Blocked → 403
``text/plain`` in sbx's shape; upstream unreachable → 502 with a one-line reason. Every
request, allowed or not, leaves exactly one audit record, written when it ends (also when the
upstream dies mid-stream). Raw TCP to ``host.docker.internal:P`` (sbx ≥ 0.30) arrives from the
in-sandbox relay as a ``CONNECT`` marked ``Labkit-Raw-TCP``: the same decision and tunnel, one
record with method ``TCP``. A connection that sent a ``CONNECT`` or an ``Upgrade`` carries no
further request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import json
import os
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools

from . import audit, store, unixsock
from .policy import Policy, PolicyError, Verdict, normalize_host
from .rules import LivePolicy

CHUNK = 65536
CONNECT_TIMEOUT = 10.0
IDLE_TIMEOUT = 120.0  # between two requests on a kept-alive client connection
MAX_HEAD = 16384  # bytes of a request line or status line and headers: h11's limit
# Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus proxy credentials.
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization",
              b"proxy-authenticate", b"te", b"trailer", b"upgrade"}
REASONS = {200: b"OK", 400: b"Bad Request", 403: b"Forbidden", 431: b"Request Header Fields Too Large",
           501: b"Not Implemented", 502: b"Bad Gateway"}
RAW_TCP_HEADER = b"labkit-raw-tcp"  # sent by relay.py with a raw-TCP CONNECT; the record's method is TCP


class _ClientGone(Exception):
    """The client closed its side mid-request."""


class _BadMessage(Exception):
    """A message the parser refused; ``status`` is what a client is answered for it."""

    def __init__(self, text: str, status: int = 400) -> None:
        super().__init__(text)
        self.status = status


class _End:
    """The end of a message: the marker that follows its head and body bytes."""


END = _End()


@dataclass(slots=True)
class _Head:
    """A parsed request or response head: names lower-cased, values without surrounding blanks."""

    method: bytes  # the request's; for a response, that of the request it answers
    target: bytes  # b"" for a response
    status: int  # 0 for a request
    reason: bytes
    version: str  # "1.0" or "1.1"
    headers: list[tuple[bytes, bytes]]
    framing: str  # "none" | "length" | "chunked" | "close" (the body ends when the connection does)
    keep_alive: bool  # a request after which the client may send another


_Event = _Head | bytes | _End | _BadMessage


class _Stream:
    """One connection (client or upstream): llhttp turns its bytes into events, a head, body
    bytes, END or a _BadMessage, and bytes are read only when the events run out, so a
    pipelined request is parsed, decided and answered strictly after the one before it.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 answering: bytes | None = None) -> None:
        """``answering``: the method of the request whose response this stream carries (None: a client)."""
        self.reader, self.writer, self.answering = reader, writer, answering
        self._parser: httptools.HttpRequestParser | httptools.HttpResponseParser = (
            httptools.HttpRequestParser(self) if answering is None else httptools.HttpResponseParser(self))
        self._events: deque[_Event] = deque()
        self._headers: list[tuple[bytes, bytes]] = []
        self._url = self._reason = b""
        self._in_message = self._in_head = self._until_close = self._progress = False
        self._head_size = self._stalled = 0  # bytes of this head; bytes fed with nothing parsed from them
        self.ended = False  # nothing more is parsed: end of stream, a refused message, or a protocol switch
        self.tail = b""  # the bytes after a CONNECT's head: the tunnel's first bytes
        self.head: _Head | None = None  # of the message being consumed
        self.complete = False  # its END was consumed

    async def next_event(self) -> _Event | None:
        """The next event; None when the stream has ended."""
        while not self._events:
            if self.ended:
                return None
            await self._read()
        event = self._events.popleft()
        if isinstance(event, _Head):
            self.head, self.complete = event, False
        elif event is END:
            self.complete = True
        elif isinstance(event, _BadMessage):
            self.head = None
        return event

    async def batch(self) -> list[_Event]:
        """Every event parsed from the next read (none when the stream has ended)."""
        while not self._events and not self.ended:
            await self._read()
        events = list(self._events)
        self._events.clear()
        return events

    async def _read(self) -> None:
        try:
            data = await self.reader.read(CHUNK)
        except ConnectionError:
            data = b""
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        if not data:
            self.ended = True
            if self._until_close:
                self._events.append(END)
            elif self._in_message:
                self._events.append(_BadMessage("the connection closed mid-message"))
            return
        self._progress = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.tail, self.ended = data[exc.args[0]:], True
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # an exception raised by one of the callbacks below
            self._events.append(cause if isinstance(cause, _BadMessage) else _BadMessage(str(exc)))
            self.ended = True
        self._stalled = 0 if self._progress else self._stalled + len(data)
        if self._stalled > MAX_HEAD and not self.ended:  # a head that keeps coming
            self._events.append(_BadMessage("message head too large", 431))
            self.ended = True

    # ---- llhttp's callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._headers, self._url, self._reason, self._head_size = [], b"", b"", 0
        self._in_message, self._in_head = True, True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # else a trailer of a chunked body: dropped
            self._head_size += len(name) + len(value) + 4
            self._headers.append((name.lower(), value.rstrip(b" \t")))  # llhttp strips only leading blanks

    def on_headers_complete(self) -> None:
        self._in_head, self._progress = False, True
        head = self._head()
        self._events.append(head)
        self._until_close = head.framing == "close"
        if self.answering == b"HEAD" and head.status >= 200:
            self._events.append(END)  # llhttp cannot be told that this answer has no body: stop here
            self.ended = True

    def on_body(self, body: bytes) -> None:
        self._progress = True
        if not self.ended:
            self._events.append(body)

    def on_message_complete(self) -> None:
        self._in_message = self._until_close = False
        self._progress = True
        if not self.ended:
            self._events.append(END)

    def _head(self) -> _Head:
        """The head just parsed, with the checks llhttp leaves to its user."""
        parser = self._parser
        version = parser.get_http_version()
        if version not in ("1.0", "1.1"):
            raise _BadMessage(f"HTTP/{version} is not supported")
        if self._head_size > MAX_HEAD:
            raise _BadMessage("message head too large", 431)
        te = length = None
        hosts = codings = 0
        close = False
        for name, value in self._headers:
            if name == b"transfer-encoding":
                te, codings = value.lower(), codings + 1
            elif name == b"content-length":
                length = value
            elif name == b"host":
                hosts += 1
            elif name == b"connection":
                close = close or b"close" in (token.strip() for token in value.lower().split(b","))
        if codings > 1 or (te is not None and te != b"chunked"):
            raise _BadMessage("only Transfer-Encoding: chunked is supported", 501)
        if isinstance(parser, httptools.HttpRequestParser):
            if hosts > 1 or (hosts == 0 and version == "1.1"):
                raise _BadMessage("an HTTP/1.1 request needs exactly one Host header")
            framing = "chunked" if te else "length" if length and int(length) else "none"
            keep_alive = version == "1.1" and not close and not parser.should_upgrade()
            return _Head(parser.get_method(), self._url, 0, b"", version, self._headers, framing, keep_alive)
        status = parser.get_status_code()
        if status < 200 or status in (204, 304) or self.answering == b"HEAD":
            framing = "none"
        else:
            framing = "chunked" if te else "length" if length is not None else "close"
        return _Head(self.answering or b"", b"", status, self._reason, version, self._headers, framing, False)


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

    def decided(self, verdict: Verdict) -> None:
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


class _Verdicts:
    """The live policy's verdicts, remembered until the policy changes: a verdict depends only on
    the rules, the host, the port and the sandbox (no DNS), and is the dearest step of a request."""

    LIMIT = 4096  # distinct (host, port, sandbox) remembered; then the memo starts over

    def __init__(self) -> None:
        self.live = LivePolicy()
        self._policy: Policy | None = None
        self._memo: dict[tuple[str, int, str | None], Verdict] = {}

    def decide(self, host: str, port: int, sandbox: str | None) -> Verdict:
        policy = self.live.get()  # the same object until the rules file changes
        if policy is not self._policy:
            self._policy, self._memo = policy, {}
        key = (host, port, sandbox)
        verdict = self._memo.get(key)
        if verdict is None:
            if len(self._memo) >= self.LIMIT:
                self._memo.clear()
            verdict = self._memo[key] = policy.decide(host, port, sandbox)
        return verdict


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
        self.verdicts = _Verdicts()
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
            handler = functools.partial(self._connection, sandbox=name)
            unix = await asyncio.start_unix_server(handler, sock=sock)
            tcp = await asyncio.start_server(handler, "127.0.0.1", 0)
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
        client = _Stream(reader, writer)
        try:
            while True:
                async with asyncio.timeout(IDLE_TIMEOUT):  # an idle kept-alive connection is closed
                    event = await client.next_event()
                if isinstance(event, _BadMessage):
                    await self._plain(client, event.status, f"Bad request: {event}\n", close=True)
                    break
                if not isinstance(event, _Head) or not await self._request(client, event, sandbox, control):
                    break
        except (ConnectionError, TimeoutError, _ClientGone):
            pass
        finally:
            writer.close()

    async def _request(self, client: _Stream, req: _Head, sandbox: str | None, control: bool) -> bool:
        """Handle one request; True when the client connection may carry another."""
        method = req.method.decode("ascii")
        target = req.target.decode("latin-1")
        body = req.framing != "none"
        if not body:  # its end is parsed already: take it
            await client.next_event()
        if control and target.startswith("/_labkit/"):
            return await self._control(client, method, target)
        record = _Record(sandbox, method, target)
        if method == "CONNECT" and any(name == RAW_TCP_HEADER for name, _ in req.headers):
            record.method = "TCP"  # the relay's raw-TCP connection to host.docker.internal:P
        try:
            try:
                host, port, path = _parse_target(method, target)
                verdict = self.verdicts.decide(host, port, sandbox)
            except (ValueError, PolicyError) as exc:
                record.rule = {"id": "bad-request", "text": str(exc)}
                return await self._refuse(client, 400, f"Bad request: {exc}\n", True, record)
            record.decided(verdict)
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
                return await self._forward(client, req, host, port, path, up_reader, up_writer, record)
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

    async def _open_upstream(self, verdict: Verdict, record: _Record
                             ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | str:
        """Connect (policy already passed); a string is the error body to send instead."""
        norm = normalize_host(verdict.host)
        literal = None
        if norm != "localhost":
            with contextlib.suppress(ValueError):
                literal = ipaddress.ip_address(norm)
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
    async def _answer(self, client: _Stream, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                      close: bool = False) -> None:
        """One whole response of our own: no body for a HEAD, ``Connection: close`` when the
        client will not send another request."""
        req = client.head
        if close or req is None or not req.keep_alive:
            headers = [*headers, (b"connection", b"close")]
        head = _message_head(b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b"")), headers)
        client.writer.write(head if req is not None and req.method == b"HEAD" else head + body)
        await client.writer.drain()

    async def _plain(self, client: _Stream, status: int, text: str, close: bool = False,
                     record: _Record | None = None) -> None:
        """Send a text/plain response of our own (``record`` is logged first)."""
        body = text.encode()
        if record is not None:
            # a raw-TCP guest gets a reset, not this body (the relay reads it)
            head = client.head is not None and client.head.method == b"HEAD"
            record.status, record.bytes_down = status, 0 if head or record.method == "TCP" else len(body)
            self._log(record)
        await self._answer(client, status, [(b"content-type", b"text/plain; charset=utf-8"),
                                            (b"content-length", b"%d" % len(body)),
                                            (b"x-content-type-options", b"nosniff")], body, close)

    async def _refuse(self, client: _Stream, status: int, text: str, close: bool, record: _Record) -> bool:
        """403 / 400 / 502 made by the proxy; a request with a body is not drained: we close."""
        await self._plain(client, status, text, close=close, record=record)
        return not close and _reusable(client)

    async def _control(self, client: _Stream, method: str, target: str) -> bool:
        if target == "/_labkit/health":
            payload: Any = {"pid": os.getpid(), "port": self.port, "sandboxes": sorted(self.servers)}
        elif target == "/_labkit/sync" and method == "POST":
            payload = await self.sync()
        else:
            await self._plain(client, 400, f"unknown control request {method} {target}\n", close=True)
            return False
        body = json.dumps(payload).encode()
        await self._answer(client, 200, [(b"content-type", b"application/json"),
                                         (b"content-length", b"%d" % len(body))], body)
        return _reusable(client)

    # ---- relaying ------------------------------------------------------------------------------
    async def _forward(self, client: _Stream, req: _Head, host: str, port: int, path: str,
                       up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, record: _Record) -> bool:
        headers = [(k, v) for k, v in req.headers if k not in HOP_BY_HOP]
        if not any(k == b"host" for k, _ in headers):
            headers.append((b"host", f"{host}:{port}".encode()))
        headers.append((b"connection", b"close"))
        up_writer.write(_message_head(b"%s %s HTTP/1.1" % (req.method, path.encode("latin-1")), headers))
        upload: asyncio.Task[None] | None = None
        if req.framing != "none":  # concurrently: the client may wait for a 100 Continue before it sends
            upload = asyncio.create_task(self._upload(client, up_writer, req.framing == "chunked", record))
        try:
            closing = await self._download(client, _Stream(up_reader, up_writer, answering=req.method), record)
        finally:
            if upload is not None and not upload.done():
                upload.cancel()  # the response is complete; the rest of the body is not wanted
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await upload
        if closing or (upload is not None and (upload.cancelled() or upload.exception() is not None)):
            return False
        return _reusable(client)

    async def _upload(self, client: _Stream, up_writer: asyncio.StreamWriter, chunked: bool,
                      record: _Record) -> None:
        while True:
            event = await client.next_event()
            if isinstance(event, bytes):
                record.bytes_up += len(event)
                up_writer.write(_chunk(event) if chunked else event)
            elif event is END:
                if chunked:
                    up_writer.write(b"0\r\n\r\n")
                await up_writer.drain()
                return
            else:
                raise _ClientGone()
            await up_writer.drain()

    async def _download(self, client: _Stream, upstream: _Stream, record: _Record) -> bool:
        """Relay the response; everything parsed from one read of the upstream goes out in one write.
        True when the answer told the client that the connection ends with it."""
        req = client.head
        assert req is not None
        final = started = closing = False  # the final (not 1xx) head was parsed; went out; said close
        chunked = False  # the client gets the body chunk-encoded
        try:
            while True:
                events = await upstream.batch()
                if not events:
                    raise _BadMessage("upstream closed the connection")
                out: list[bytes] = []
                sent_head = done = False
                for event in events:
                    if isinstance(event, _Head):
                        if event.status == 101:
                            raise _BadMessage("upstream switched protocols")
                        if event.status >= 200:
                            record.status, final, sent_head = event.status, True, True
                            # an answer that overtakes the upload ends the connection: the rest is not read
                            closing = not client.complete or not req.keep_alive
                            head, chunked = _response_head(event, req, closing)
                            out.append(head)
                        elif req.version == "1.1":  # 100 Continue and friends
                            out.append(_message_head(b"HTTP/1.1 %d %s" % (event.status, event.reason),
                                                     [(k, v) for k, v in event.headers if k not in HOP_BY_HOP]))
                    elif isinstance(event, bytes):
                        record.bytes_down += len(event)
                        out.append(_chunk(event) if chunked else event)
                    elif event is END:
                        if not final:
                            continue  # the end of a 100 Continue: the answer is still to come
                        if chunked:
                            out.append(b"0\r\n\r\n")
                        self._log(record)  # the client has its whole answer with this write
                        done = True
                        break
                    elif isinstance(event, _BadMessage):
                        raise event
                client.writer.write(b"".join(out))
                started = started or sent_head
                await client.writer.drain()
                if done:
                    return closing
        except _BadMessage as exc:
            if not started:
                record.error = f"upstream: {exc}"
                await self._plain(client, 502, f"Bad gateway: upstream {record.normalized} sent no valid response "
                                  f"({exc})\n", close=True, record=record)
                return True
            record.error = "upstream closed mid-response"
            client.writer.transport.abort()  # an incomplete body must look incomplete to the client
            raise _ClientGone() from exc
        except (ConnectionError, _ClientGone) as exc:
            record.error = record.error or f"client went away ({type(exc).__name__})"
            raise _ClientGone() from exc

    async def _tunnel(self, client: _Stream, up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter,
                      record: _Record) -> None:
        client.writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        record.status = 200
        if client.tail:
            record.bytes_up += len(client.tail)
            up_writer.write(client.tail)

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


def _message_head(first_line: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join([first_line, b"\r\n", *[b"%s: %s\r\n" % header for header in headers], b"\r\n"])


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _response_head(resp: _Head, req: _Head, close: bool) -> tuple[bytes, bool]:
    """The response head as the client gets it, and whether its body goes chunk-encoded.

    h11's rules, which this proxy followed so far: a body of unknown length is chunked for an
    HTTP/1.1 client and ends with the connection for an HTTP/1.0 one."""
    headers = [(k, v) for k, v in resp.headers if k not in HOP_BY_HOP]
    chunked = False
    if resp.status not in (204, 304) and (
            resp.framing == "chunked" or not any(k == b"content-length" for k, _ in headers)):
        headers = [(k, v) for k, v in headers if k not in (b"content-length", b"transfer-encoding")]
        if req.version == "1.1":
            headers.append((b"transfer-encoding", b"chunked"))
            chunked = resp.framing != "none"
        elif req.method != b"HEAD":
            close = True
    if close:
        headers.append((b"connection", b"close"))
    return _message_head(b"HTTP/1.1 %d %s" % (resp.status, resp.reason), headers), chunked


def _reusable(client: _Stream) -> bool:
    """The request was read to its end and allows another after it on this connection."""
    return client.head is not None and client.head.keep_alive and client.complete


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
    from .._core import paths
    from .._core.daemon import exit_when_folder_gone

    exit_when_folder_gone(paths.home())
    try:  # uvloop (a dependency) takes about a quarter off the proxy's CPU per request; asyncio works too
        import uvloop
    except ImportError:
        asyncio.run(serve(run_dir(), args.port))
    else:
        uvloop.run(serve(run_dir(), args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
