"""The proxy's parser: smuggling shapes refused before any decision, framing kept, records in order."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from sbx_helpers import Upstream, audit_mark, audit_since, audit_wait

from labkit.sbx import rules

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("fresh_policy")]


def exchange(port: int, payload: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, read everything until the proxy closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# Each shape is sent to an *allowed* upstream, so only the parser can refuse it. The body of
# the first few hides a second request to a host no rule allows: a proxy and a server that
# disagreed on where the first request ends would forward that second request unchecked.
HIDDEN = b"GET http://denied.example/secret HTTP/1.1\r\nHost: denied.example\r\n\r\n"
SHAPES = {
    "content-length and transfer-encoding": (b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                                             + HIDDEN, 400),
    "two different content-lengths": (b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(HIDDEN) + HIDDEN, 400),
    "a content-length list": (b"Content-Length: 0, 0\r\n\r\n" + HIDDEN, 400),
    "a coding before chunked": (b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + HIDDEN, 501),
    "two transfer-encoding headers": (b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                                      501),
    "an obs-fold": (b"X-Note: a\r\n  folded\r\n\r\n", 400),
    "a space before the colon": (b"Content-Length : 5\r\n\r\nhello", 400),
    "a bare CR in a value": (b"X-Note: a\rb\r\n\r\n", 400),
    "a NUL in a value": (b"X-Note: a\x00b\r\n\r\n", 400),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_smuggling_shapes_are_refused_and_nothing_reaches_the_upstream(
        proxy_port: int, upstream: Upstream, shape: str) -> None:
    rules.add("allow", f"localhost:{upstream.port}")
    rest, status = SHAPES[shape]
    hdi = f"host.docker.internal:{upstream.port}"
    before = sum(upstream.hits.values())  # the server is shared by the package's tests
    response = exchange(proxy_port, f"POST http://{hdi}/echo HTTP/1.1\r\nHost: {hdi}\r\n".encode() + rest)
    assert status_of(response) == status, response
    assert b"connection: close" in response.lower()
    assert sum(upstream.hits.values()) == before


@pytest.mark.parametrize("request_line", [
    b"GET http://localhost:1/ HTTP/1.1\r\n\r\n",  # HTTP/1.1 needs a Host
    b"GET http://localhost:1/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET http://localhost:1/ HTTP/1.1\nHost: a\n\n",  # bare LF line ends
    b"GET http://localhost:1/ HTTP/2.0\r\nHost: a\r\n\r\n",
])
def test_malformed_heads_are_a_400_with_no_record(proxy_port: int, request_line: bytes) -> None:
    mark = audit_mark()
    assert status_of(exchange(proxy_port, request_line)) == 400
    assert audit_since(mark) == []


def test_a_head_larger_than_16_kib_is_a_431(proxy_port: int) -> None:
    head = b"GET http://localhost:1/ HTTP/1.1\r\nHost: a\r\n" + b"X-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
    assert status_of(exchange(proxy_port, head)) == 431


def test_a_request_inside_a_body_is_body_not_a_request(proxy_port: int, upstream: Upstream,
                                                       other_upstream: Upstream) -> None:
    rules.add("allow", f"localhost:{upstream.port}")
    hidden = f"GET http://localhost:{other_upstream.port}/secret HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    hdi = f"host.docker.internal:{upstream.port}"
    mark = audit_mark()
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    conn.request("POST", f"http://{hdi}/echo", body=hidden)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == hidden
    [rec] = audit_wait(mark, 1)
    assert (rec.method, rec.decision, rec.bytes_up, rec.bytes_down) == ("POST", "allow", len(hidden), len(hidden))
    assert other_upstream.hits["/secret"] == 0


class OneShot:
    """A raw server for one connection: reads until ``until``, answers ``reply(received)``, closes."""

    def __init__(self, until: bytes, reply: Callable[[bytes], bytes]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = b""

        def serve() -> None:
            conn, _ = self.sock.accept()
            with conn:
                while until not in self.received and (chunk := conn.recv(65536)):
                    self.received += chunk
                conn.sendall(reply(self.received))

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.thread.join(10)
        self.sock.close()


def test_a_chunked_upload_and_a_chunked_answer_are_framed_anew(proxy_port: int) -> None:
    def echo(received: bytes) -> bytes:  # the bytes the proxy sent, as one chunk of the answer
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
            len(received), received)

    server = OneShot(b"0\r\n\r\n", echo)
    try:
        rules.add("allow", f"localhost:{server.port}")
        mark = audit_mark()
        conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
        conn.request("POST", f"http://host.docker.internal:{server.port}/upload", body=iter([b"abc", b"de"]),
                     encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        sent = resp.read()
    finally:
        server.close()
    assert resp.getheader("transfer-encoding") == "chunked"
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /upload HTTP/1.1\r\n") and b"transfer-encoding: chunked" in head
    assert body == b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    [rec] = audit_wait(mark, 1)
    assert (rec.status, rec.bytes_up, rec.bytes_down) == (200, 5, len(sent))


def test_an_answer_that_overtakes_the_upload_closes_the_connection(proxy_port: int) -> None:
    server = OneShot(b"\r\n\r\n", lambda _: b"HTTP/1.1 413 Too Large\r\nContent-Length: 2\r\n\r\nno")
    try:
        rules.add("allow", f"localhost:{server.port}")
        hdi = f"host.docker.internal:{server.port}"
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as sock:
            sock.sendall(f"POST http://{hdi}/up HTTP/1.1\r\nHost: {hdi}\r\nContent-Length: 1000\r\n\r\n".encode()
                         + b"x" * 10)  # the other 990 bytes never come
            response = b""
            while chunk := sock.recv(65536):  # ends: the proxy closes, it will not read the rest
                response += chunk
    finally:
        server.close()
    assert status_of(response) == 413 and response.endswith(b"\r\n\r\nno")
    assert b"connection: close" in response.lower()


def test_a_100_continue_is_relayed_and_the_body_follows(proxy_port: int, upstream: Upstream) -> None:
    rules.add("allow", f"localhost:{upstream.port}")
    hdi = f"host.docker.internal:{upstream.port}"
    body = b"x" * 100_000
    mark = audit_mark()
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as sock:
        sock.sendall(f"POST http://{hdi}/echo HTTP/1.1\r\nHost: {hdi}\r\nContent-Length: {len(body)}\r\n"
                     f"Expect: 100-continue\r\nConnection: close\r\n\r\n".encode())
        interim = b""
        while b"\r\n\r\n" not in interim:  # the client waits for it before it sends the body
            interim += sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        response = interim.partition(b"\r\n\r\n")[2]
        while chunk := sock.recv(65536):
            response += chunk
    assert status_of(response) == 200 and response.endswith(b"\r\n\r\n" + body)
    [rec] = audit_wait(mark, 1)
    assert (rec.status, rec.bytes_up, rec.bytes_down) == (200, len(body), len(body))


def test_an_http10_client_gets_a_chunked_answer_as_bytes_until_close(proxy_port: int, upstream: Upstream) -> None:
    rules.add("allow", f"localhost:{upstream.port}")
    response = exchange(proxy_port, f"GET http://localhost:{upstream.port}/sse?n=2&gap=0 HTTP/1.0\r\n\r\n".encode())
    head, _, body = response.partition(b"\r\n\r\n")
    assert status_of(head) == 200 and b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower() and body.count(b"data:") == 2 and not body.startswith(b"1")


def test_a_head_answer_has_no_body_and_the_connection_carries_on(proxy_port: int, upstream: Upstream) -> None:
    rules.add("allow", f"localhost:{upstream.port}")
    hdi = f"host.docker.internal:{upstream.port}"
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    conn.request("HEAD", f"http://{hdi}/hello")
    resp = conn.getresponse()
    assert resp.read() == b""  # the test server has no HEAD handler: its 501 says so, without a body
    conn.request("GET", f"http://{hdi}/hello")
    assert conn.getresponse().read() == b"hello from the host\n"


def test_each_connection_has_its_records_in_request_order_under_concurrency(
        proxy_port: int, upstream: Upstream) -> None:
    """16 connections × 30 requests, kept alive or pipelined, allowed and denied: 480 records,
    one per request, and every connection's records in the order it sent the requests."""
    rules.add("allow", f"localhost:{upstream.port}")
    hdi = f"host.docker.internal:{upstream.port}"
    clients, each = 16, 30
    mark = audit_mark()
    errors: list[BaseException] = []

    def target(c: int, n: int) -> str:
        return f"http://{hdi}/hello?c={c}&n={n}" if n % 3 else f"http://denied-{c}.example/?c={c}&n={n}"

    def client(c: int) -> None:
        try:
            if c % 2:  # all requests in one write
                payload = b"".join(f"GET {target(c, n)} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in range(each))
                closing = b"GET http://closing.example/ HTTP/1.1\r\nHost: closing.example\r\nConnection: close\r\n\r\n"
                response = exchange(proxy_port, payload + closing)
                assert response.count(b"HTTP/1.1 ") == each + 1
            else:
                conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=20)
                for n in range(each):
                    conn.request("GET", target(c, n))
                    conn.getresponse().read()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(45)
    assert not errors, errors[:3]
    records = [r for r in audit_wait(mark, clients * each, 20) if "c=" in r.url]
    assert len(records) == clients * each
    seen: dict[int, list[int]] = {}
    for rec in records:
        query = parse_qs(urlsplit(rec.url).query)
        c, n = int(query["c"][0]), int(query["n"][0])
        assert rec.decision == ("allow" if n % 3 else "deny")
        seen.setdefault(c, []).append(n)
    assert seen == {c: list(range(each)) for c in range(clients)}
