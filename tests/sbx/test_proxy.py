"""The policy proxy on its own: every request decided, streamed, and audited exactly once."""

from __future__ import annotations

import asyncio
import http.client
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import h11
import pytest
from sbx_helpers import Upstream, audit_mark, audit_wait

from labkit.sbx import audit, rules, runtime, service
from labkit.sbx.proxy import ProxyServer
from tests.support import free_port

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("fresh_policy")]


def raw_exchange(port: int, payload: bytes, responses: int, timeout: float = 10) -> list[tuple[int, bytes]]:
    """Send raw bytes (possibly several pipelined requests); parse up to ``responses`` responses with h11."""
    got: list[tuple[int, bytes]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        leftover, closed = b"", False
        while len(got) < responses and not (closed and not leftover):
            conn = h11.Connection(h11.CLIENT)  # one per response: it must have "sent" the request first
            conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
            conn.send(h11.EndOfMessage())
            if leftover:
                conn.receive_data(leftover)  # (b"" would mean EOF to h11)
            status, body = 0, b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = sock.recv(65536)
                    closed = not data
                    conn.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    got.append((status, body))
                    leftover = conn.trailing_data[0]
                    break
                else:
                    return got
    return got


def read_one(sock: socket.socket, payload: bytes) -> tuple[int, bytes]:
    """Send one request on an open connection and read its response."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    sock.sendall(payload)
    status, body = 0, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return status, body
        else:
            raise AssertionError(f"connection ended early: {event}")


def request(target: str, host: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def test_block_body_and_audit_record(proxy_port: int, upstream: Upstream) -> None:
    hits = upstream.hits["/v1/models"]  # the upstream serves the whole package: count from here
    mark = audit_mark()
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    conn.request("GET", f"http://host.docker.internal:{upstream.port}/v1/models")
    resp = conn.getresponse()
    body = resp.read().decode()
    assert resp.status == 403 and resp.getheader("content-type").startswith("text/plain")
    assert body == (f"Blocked by network policy: domain host.docker.internal:{upstream.port}\n"
                    f"  detail: no matching allow rule — blocked by default deny policy "
                    f"(matched as localhost:{upstream.port})\n")
    assert upstream.hits["/v1/models"] == hits
    [rec] = audit_wait(mark, 1)
    assert (rec.method, rec.host, rec.port, rec.normalized, rec.decision, rec.status, rec.rule["id"]) == (
        "GET", "host.docker.internal", upstream.port, f"localhost:{upstream.port}", "deny", 403, "default-deny")
    assert rec.url == f"http://host.docker.internal:{upstream.port}/v1/models" and rec.sandbox is None
    assert rec.bytes_down == len(body.encode()) and rec.duration_ms >= 0


def test_allowed_localhost_reaches_host_loopback_and_is_audited(proxy_port: int, upstream: Upstream) -> None:
    rule = rules.add("allow", f"localhost:{upstream.port}")
    mark = audit_mark()
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    conn.request("POST", f"http://host.docker.internal:{upstream.port}/echo", body=b"x" * 1000)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"x" * 1000
    [rec] = audit_wait(mark, 1)
    assert (rec.decision, rec.status, rec.bytes_up, rec.bytes_down) == ("allow", 200, 1000, 1000)
    assert rec.rule == {"id": rule.id, "name": rule.name, "text": f"allow localhost:{upstream.port}"}


def test_keep_alive_and_pipelined_second_request_to_a_denied_host_is_denied(
        proxy_port: int, upstream: Upstream, other_upstream: Upstream) -> None:
    rules.add("allow", f"localhost:{upstream.port}")
    allowed = request(f"http://host.docker.internal:{upstream.port}/hello", f"host.docker.internal:{upstream.port}")
    denied = request(f"http://localhost:{other_upstream.port}/secret", f"localhost:{other_upstream.port}")
    mark = audit_mark()
    # kept alive: the second request goes on the same connection after the first answer
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as sock:
        assert read_one(sock, allowed)[0] == 200
        assert read_one(sock, denied)[0] == 403
    # pipelined: both requests in one write
    assert [s for s, _ in raw_exchange(proxy_port, allowed + denied, 2)] == [200, 403]
    assert other_upstream.hits["/secret"] == 0
    records = audit_wait(mark, 4)
    assert [(r.decision, r.port) for r in records] == [("allow", upstream.port), ("deny", other_upstream.port)] * 2


def test_sse_arrives_chunk_by_chunk(proxy_port: int, upstream: Upstream) -> None:
    rules.add("allow", f"localhost:{upstream.port}")
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    t0 = time.monotonic()
    conn.request("GET", f"http://host.docker.internal:{upstream.port}/sse?n=5&gap=0.15")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type") == "text/event-stream"
    arrivals = []
    for line in resp:
        if line.startswith(b"data:"):
            arrivals.append(time.monotonic() - t0)
    assert len(arrivals) == 5
    # buffered, all five would arrive together after ~0.6 s; streamed, the first comes at once
    assert arrivals[0] < 0.3 and arrivals[-1] - arrivals[0] > 0.45
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) > 0.08, gaps


def test_killed_upstream_mid_stream_ends_the_response_and_is_audited(proxy_port: int, tmp_path: Path) -> None:
    port = free_port()
    script = textwrap.dedent(f"""
        import socket, time
        srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", {port})); srv.listen(1); print("ready", flush=True)
        conn, _ = srv.accept(); conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: text/event-stream\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n"
                     b"d\\r\\ndata: first\\n\\n\\r\\n")
        time.sleep(60)
    """)
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        rules.add("allow", f"localhost:{port}")
        mark = audit_mark()
        conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
        conn.request("GET", f"http://host.docker.internal:{port}/stream")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.readline() == b"data: first\n"
        server.send_signal(signal.SIGKILL)
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
    finally:
        server.kill()
        server.wait()
    [rec] = audit_wait(mark, 1)
    assert (rec.decision, rec.status, rec.error) == ("allow", 200, "upstream closed mid-response")
    assert rec.bytes_down == len(b"data: first\n\n")


def test_refused_upstream_is_a_502_with_one_line(proxy_port: int) -> None:
    port = free_port()
    rules.add("allow", f"localhost:{port}")
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    conn.request("GET", f"http://host.docker.internal:{port}/")
    resp = conn.getresponse()
    body = resp.read().decode()
    assert resp.status == 502 and body.count("\n") == 1 and "connection refused" in body


def test_connect_tunnels_are_decided_and_audited(proxy_port: int, upstream: Upstream) -> None:
    mark = audit_mark()
    tunnel = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    tunnel.set_tunnel("host.docker.internal", upstream.port)
    with pytest.raises(OSError, match="403"):
        tunnel.request("GET", "/hello")
    rules.add("allow", f"localhost:{upstream.port}")
    tunnel = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    tunnel.set_tunnel("host.docker.internal", upstream.port)
    tunnel.request("GET", "/hello", headers={"Connection": "close"})
    assert tunnel.getresponse().read() == b"hello from the host\n"
    tunnel.close()
    records = audit_wait(mark, 2)
    assert [(r.method, r.url, r.decision, r.status) for r in records] == [
        ("CONNECT", f"host.docker.internal:{upstream.port}", "deny", 403),
        ("CONNECT", f"host.docker.internal:{upstream.port}", "allow", 200)]
    assert records[1].bytes_up > 0 and records[1].bytes_down > len(b"hello from the host\n")


def test_names_resolving_to_loopback_and_direct_loopback_need_their_own_rule(proxy_port: int,
                                                                             other_upstream: Upstream) -> None:
    upstream = other_upstream
    hits = upstream.hits["/hello"]  # shared by the package's tests: count from here
    rules.add("allow", "**")  # even allow-all does not turn a name into a path to host loopback
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    conn.request("GET", f"http://2130706433:{upstream.port}/hello")  # 127.0.0.1 as a number: a *name* here
    resp = conn.getresponse()
    assert resp.status == 403 and "loopback" in resp.read().decode()
    rules.reset()
    for host in ("127.0.0.1", "localhost", "[::1]"):
        conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
        conn.request("GET", f"http://{host}:{upstream.port}/hello")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 403, host
    assert upstream.hits["/hello"] == hits


def test_concurrent_clients_each_request_audited_once(upstream: Upstream, workspace: Path) -> None:
    """20 clients × 50 mixed requests through two sandboxes' ports → exactly 1000 records, right decisions."""
    names = [f"load-a-{time.monotonic_ns() % 10**6}", f"load-b-{time.monotonic_ns() % 10**6}"]
    for name in names:
        runtime.create("shell", str(workspace), name)
    try:
        ports = {name: service.endpoint(name).port for name in names}
        rules.add("allow", f"localhost:{upstream.port}", sandbox=names[0])  # only sandbox A may reach it
        mark = audit_mark()
        errors: list[BaseException] = []

        def client(i: int) -> None:
            name = names[i % 2]
            try:
                conn = http.client.HTTPConnection("127.0.0.1", ports[name], timeout=20)
                for j in range(50):
                    kind = j % 3
                    if kind == 2:  # a CONNECT tunnel on its own connection
                        tunnel = http.client.HTTPConnection("127.0.0.1", ports[name], timeout=20)
                        tunnel.set_tunnel("host.docker.internal", upstream.port)
                        try:
                            tunnel.request("GET", "/hello", headers={"Connection": "close"})
                            tunnel.getresponse().read()
                        except OSError:
                            pass  # 403 for sandbox B
                        tunnel.close()
                        continue
                    target = (f"http://host.docker.internal:{upstream.port}/hello" if kind == 0
                              else f"http://denied-{i}-{j}.example/")
                    conn.request("GET", target)
                    conn.getresponse().read()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(45)
        assert not errors, errors[:3]
        records = audit_wait(mark, 1000, 20)
        assert len(records) == 1000
        by = {(r.sandbox, r.method, "denied" in r.host, r.decision) for r in records}
        assert by == {(names[0], "GET", False, "allow"), (names[0], "CONNECT", False, "allow"),
                      (names[0], "GET", True, "deny"), (names[1], "GET", False, "deny"),
                      (names[1], "CONNECT", False, "deny"), (names[1], "GET", True, "deny")}
        assert sum(r.sandbox == names[0] for r in records) == 500
        assert all(r.status == (200 if r.decision == "allow" else 403) for r in records)
    finally:
        for name in names:
            runtime.remove(name)


def test_policy_is_decided_before_any_dns_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process proxy with a spy resolver: a denied name is never looked up, an allowed one is."""
    looked_up: list[str] = []

    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        real = loop.getaddrinfo

        async def spy(host, *args, **kwargs):  # type: ignore[no-untyped-def]
            looked_up.append(host)
            return await real(host, *args, **kwargs)

        monkeypatch.setattr(loop, "getaddrinfo", spy)
        server = ProxyServer(tmp_path / "run", 0, tmp_path / "audit.jsonl")
        await server.start()
        statuses = []
        try:
            for host in ("denied.invalid", "allowed.invalid"):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(request(f"http://{host}/", host))
                await writer.drain()
                statuses.append(int((await reader.readline()).split()[1]))
                writer.close()
        finally:
            await server.close()
        return statuses

    rules.add("allow", "allowed.invalid")
    assert asyncio.run(scenario()) == [403, 502]
    assert looked_up == ["allowed.invalid"]
    records = audit.read(path=tmp_path / "audit.jsonl")
    assert [(r.host, r.decision, r.status) for r in records] == [
        ("denied.invalid", "deny", 403), ("allowed.invalid", "allow", 502)]


def test_large_bodies_stream_both_ways_and_a_denied_body_is_not_read(proxy_port: int, upstream: Upstream) -> None:
    rules.add("allow", f"localhost:{upstream.port}")
    payload = bytes(range(256)) * (10 * 4096)  # 10 MiB
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=30)
    conn.request("POST", f"http://host.docker.internal:{upstream.port}/echo", body=payload)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == payload
    conn.request("POST", "http://denied.example/upload", body=payload[:100_000])
    resp = conn.getresponse()
    assert resp.status == 403 and resp.getheader("connection") == "close"
    resp.read()
