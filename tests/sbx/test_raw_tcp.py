"""Raw TCP to host.docker.internal:P from inside a namespaced sandbox, as sbx ≥ 0.30 has it.

A client that ignores the proxy variables (a plain socket, ``curl --noproxy '*'``) reaches the
host's 127.0.0.1:P when ``localhost:P`` is allowed, is refused otherwise, and every connection
the relay takes leaves one audit record (method ``TCP``) written by the proxy's own decision
path. The process tier has no host.docker.internal at all, so these tests need namespaces.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from sbx_helpers import Upstream, audit_mark, audit_since, audit_wait, run_in, sbx

from labkit.records import PolicyRule
from labkit.sbx import audit, rules, runtime
from labkit.sbx.policy import Policy

pytestmark = [pytest.mark.timeout(90), pytest.mark.namespaces, pytest.mark.usefixtures("fresh_policy")]

BANNER = b"echo-server ready\n"

# Runs inside the sandbox: one connection per payload size; prints what happened to each.
CLIENT = r"""
import socket, sys, time
port, sizes = int(sys.argv[1]), [int(s) for s in sys.argv[2].split(",")]
for size in sizes:
    t0 = time.monotonic()
    try:
        s = socket.create_connection(("host.docker.internal", port), timeout=5)
        banner = s.recv(len(b"echo-server ready\n"))
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        back = b""
        while chunk := s.recv(65536):
            back += chunk
        s.close()
        ok = banner == b"echo-server ready\n" and back == payload
        print("ECHOED" if ok else f"MISMATCH banner={banner!r} got={len(back)}", size)
    except OSError as exc:
        print("REFUSED", type(exc).__name__, f"{time.monotonic() - t0:.3f}")
"""


class EchoServer:
    """A TCP server on the host's 127.0.0.1: sends a banner first, then echoes until the client's EOF."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            conn.sendall(BANNER)
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def connect_from(sandbox: str, port: int, *sizes: int) -> list[str]:
    done = runtime.exec_command(sandbox, ["python3", "-c", CLIENT, str(port), ",".join(map(str, sizes))],
                                timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def tcp_records(mark: int, count: int) -> list[audit.AuditRecord]:
    return [r for r in audit_wait(mark, count) if r.method == "TCP"]


def test_allowed_by_a_localhost_rule_with_one_record_per_connection(sandbox: str, echo: EchoServer) -> None:
    rules.add("allow", f"localhost:{echo.port}")
    mark = audit_mark()
    assert connect_from(sandbox, echo.port, 5, 300_000) == ["ECHOED 5", "ECHOED 300000"]
    records = tcp_records(mark, 2)
    assert len(records) == 2 and len(audit_since(mark)) == 2  # nothing else left the sandbox
    for rec, size in zip(records, (5, 300_000), strict=True):
        assert (rec.sandbox, rec.decision, rec.url, rec.normalized) == (
            sandbox, "allow", f"host.docker.internal:{echo.port}", f"localhost:{echo.port}")
        assert rec.rule["text"] == f"allow localhost:{echo.port}" and rec.status == 200
        assert (rec.bytes_up, rec.bytes_down) == (size, len(BANNER) + size)
        assert rec.duration_ms > 0
    assert echo.connections == 2
    [entry] = audit.policy_log(sandbox)
    assert (entry.proxy, entry.rule, entry.count, entry.blocked) == ("network", "domain-allowed", 2, False)


def test_refused_without_a_rule_and_nothing_reaches_the_host(sandbox: str, echo: EchoServer) -> None:
    mark = audit_mark()
    [line] = connect_from(sandbox, echo.port, 5)
    assert line.startswith("REFUSED ConnectionRefusedError") and float(line.split()[-1]) < 1.0
    assert echo.connections == 0 and audit_since(mark) == []  # no rule names the port: the relay never listens


def test_model_port_is_always_watched_so_a_blocked_attempt_is_audited(
        sandbox: str, echo: EchoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_DMR_PORT", str(echo.port))  # stands in for 12434
    mark = audit_mark()
    [line] = connect_from(sandbox, echo.port, 5)
    assert line.startswith("REFUSED") and float(line.split()[-1]) < 1.0
    [rec] = tcp_records(mark, 1)
    assert (rec.decision, rec.rule["id"], rec.status, rec.bytes_up, rec.bytes_down) == (
        "deny", "default-deny", 403, 0, 0)
    assert echo.connections == 0


def test_a_deny_rule_beats_the_allow(sandbox: str, echo: EchoServer) -> None:
    rules.add("allow", f"localhost:{echo.port}")
    rules.add("deny", f"localhost:{echo.port}", sandbox=sandbox)
    mark = audit_mark()
    [line] = connect_from(sandbox, echo.port, 5)
    assert line.startswith("REFUSED") and float(line.split()[-1]) < 1.0
    [rec] = tcp_records(mark, 1)
    assert rec.decision == "deny" and rec.rule["text"] == f"deny localhost:{echo.port} (sandbox {sandbox})"
    assert echo.connections == 0
    [entry] = audit.policy_log(sandbox)
    assert (entry.proxy, entry.rule, entry.blocked) == ("network", "user-denied", True)


def test_curl_ignoring_the_proxy_and_curl_through_it(sandbox: str, upstream: Upstream) -> None:
    assert sbx("policy", "allow", "network", f"localhost:{upstream.port}").returncode == 0
    url = f"http://host.docker.internal:{upstream.port}/v1/models"
    mark = audit_mark()
    direct = run_in(sandbox, f"curl -sS -m 5 --noproxy '*' {url}")
    proxied = run_in(sandbox, f"curl -sS -m 5 {url}")
    assert '"ai/test-model"' in direct.stdout and '"ai/test-model"' in proxied.stdout, direct.stderr
    raw, http = audit_wait(mark, 2)
    assert (raw.method, raw.decision, raw.status) == ("TCP", "allow", 200) and raw.bytes_down > raw.bytes_up > 0
    assert (http.method, http.url, http.status) == ("GET", url, 200)


def test_loopback_ports_are_the_ports_rules_name_for_localhost() -> None:
    def rule(decision: str, resources: tuple[str, ...], applies_to: str = "all") -> PolicyRule:
        return PolicyRule(f"id-{resources[0]}", decision, resources, applies_to=applies_to)  # type: ignore[arg-type]

    policy = Policy([rule("allow", ("localhost:1", "example.com:2")), rule("deny", ("**:3",)),
                     rule("allow", ("localhost",)), rule("allow", ("127.0.0.1:5",)),
                     rule("allow", ("localhost:4",), applies_to="box")])
    assert policy.loopback_ports() == {1, 3}
    assert policy.loopback_ports("box") == {1, 3, 4}
