"""In-sandbox relay: the guest's 127.0.0.1:3128 → the policy proxy's Unix socket, then the command.

Runs inside a namespaced sandbox as ``python3 -I -S relay.py SOCKET [ADDR PORT,PORT…] -- CMD [ARG…]``,
with no labkit import (only the interpreter is bound in).

**Raw TCP** (sbx ≥ 0.30: raw TCP to ``host.docker.internal:P`` passes when ``localhost:P`` is
allowed). With ``ADDR PORTS`` the relay also listens on ``ADDR:P`` for each port (ADDR is what
host.docker.internal resolves to inside). Each connection there opens a proxy connection that
starts with ``CONNECT host.docker.internal:P`` plus a ``Labkit-Raw-TCP`` header, so the proxy
decides and audits it like any tunnel (method ``TCP`` in the record); the guest's bytes wait
until the proxy answers 200, anything else resets the guest's connection. The relay decides
nothing itself.

It listens *before* it execs the command,
so the command's first request cannot race the relay (no readiness polling), and it
double-forks the relay off: the command stays the sandbox's main process, and the relay
exits when the command does (docs/sandbox-isolation.md §4 #4), so nothing keeps the namespace alive.

One thread, one epoll loop, C modules only (fast to start, no thread per connection); the
guest side gets TCP_NODELAY, avoiding the Nagle stall measured with socat (§4 #5). Killing
the relay only cuts the guest off.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # typeshed has no stub for the C module
import _socket
import os
import select
import sys

PORT = 3128
CHUNK = 65536
IN, OUT = select.EPOLLIN, select.EPOLLOUT
HOST_NAME = "host.docker.internal"
MAX_HEAD = 8192  # the proxy's answer to a raw-TCP CONNECT is a few dozen bytes
_LINGER_RESET = (1).to_bytes(4, sys.byteorder) + (0).to_bytes(4, sys.byteorder)  # struct linger {1, 0}


class _End:
    """One socket of a relayed pair: what it still has to send, and whether it is done."""

    __slots__ = ("sock", "peer", "pending", "eof", "shut", "handshake")

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.peer: _End | None = None
        self.pending = bytearray()  # bytes read from the peer that this socket could not take yet
        self.eof = False  # this socket sent EOF (nothing more to read from it)
        self.shut = False  # we shut down writing on this socket
        self.handshake: bytearray | None = None  # a raw-TCP proxy side: its answer so far, until a 200


def _raw_header(port: int) -> bytes:
    target = f"{HOST_NAME}:{port}"
    return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nLabkit-Raw-TCP: 1\r\n\r\n".encode()


class Relay:
    def __init__(self, listeners: list[tuple[_socket.socket, bytes]], path: str, command_pid: int) -> None:
        """``listeners``: (socket, what to send the proxy first); b"" for the proxy port itself."""
        self.path = path
        self.ep = select.epoll()
        self.ends: dict[int, _End] = {}
        self.listeners: dict[int, tuple[_socket.socket, bytes]] = {}
        for listener, header in listeners:
            listener.setblocking(False)
            self.listeners[listener.fileno()] = (listener, header)
            self.ep.register(listener.fileno(), IN)
        try:  # a pidfd turns readable when the command exits (Linux ≥ 5.3)
            self.pidfd = os.pidfd_open(command_pid)
            self.ep.register(self.pidfd, IN)
        except (OSError, AttributeError):
            self.pidfd = -1
        self.command_pid = command_pid

    def run(self) -> None:
        while True:
            events = self.ep.poll(-1 if self.pidfd >= 0 else 0.5)
            if self.pidfd < 0 and not _alive(self.command_pid):
                os._exit(0)
            for fd, mask in events:
                if fd == self.pidfd:
                    os._exit(0)
                if fd in self.listeners:
                    self._accept(*self.listeners[fd])
                    continue
                end = self.ends.get(fd)
                if end is None:
                    continue
                if end.eof and mask & (select.EPOLLHUP | select.EPOLLERR):
                    self._close(end)  # hung up after its EOF: nothing more can go either way
                    continue
                if mask & (IN | select.EPOLLHUP | select.EPOLLERR):
                    self._read(end)
                if fd in self.ends and mask & OUT:
                    self._flush(end)

    def _accept(self, listener: _socket.socket, header: bytes) -> None:
        while True:
            try:
                fd, _ = listener._accept()  # type: ignore[attr-defined]  # the C method, not in typeshed
            except BlockingIOError:
                return
            except OSError:
                return
            guest = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM, 0, fd)
            proxy = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                guest.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                proxy.connect(self.path)
            except OSError:
                guest.close()
                proxy.close()
                continue
            a, b = _End(guest), _End(proxy)
            a.peer, b.peer = b, a
            for end in (a, b):
                end.sock.setblocking(False)
                self.ends[end.sock.fileno()] = end
                self.ep.register(end.sock.fileno(), IN)
            if header:  # raw TCP: ask the proxy first; the guest is not read until it says yes
                b.handshake = bytearray()
                b.pending += header
                self._flush(b)

    def _read(self, end: _End) -> None:
        peer = end.peer
        assert peer is not None
        try:
            data = end.sock.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self._close(end)
            return
        if end.handshake is not None:
            self._answer(end, data)
            return
        if not data:
            end.eof = True
            self._watch(end)
            if not peer.pending:
                self._shutdown(peer)
            return
        peer.pending += data
        self._flush(peer)

    def _answer(self, end: _End, data: bytes) -> None:
        """The proxy's answer to a raw-TCP CONNECT: 200 opens the tunnel, anything else resets the guest."""
        assert end.handshake is not None and end.peer is not None
        end.handshake += data
        head = end.handshake.find(b"\r\n\r\n")
        if head < 0:
            if data and len(end.handshake) < MAX_HEAD:
                return  # more of the answer to come
            self._reset(end.peer)
            return
        if not end.handshake.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
            self._reset(end.peer)  # blocked (403) or unreachable (502): the proxy has audited it
            return
        rest = end.handshake[head + 4:]
        end.handshake = None
        end.peer.pending += rest
        self._flush(end.peer)  # also resumes reading the guest

    def _reset(self, end: _End) -> None:
        """Close ``end`` with a TCP reset (and its peer), as a refused connection looks to the client."""
        try:
            end.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
        self._close(end)

    def _flush(self, end: _End) -> None:
        """Send what is pending on ``end``; stop reading its peer while it cannot keep up."""
        try:
            while end.pending:
                sent = end.sock.send(end.pending)
                del end.pending[:sent]
        except BlockingIOError:
            pass
        except OSError:
            self._close(end)
            return
        assert end.peer is not None
        if not end.pending and end.peer.eof:
            self._shutdown(end)
        self._watch(end)
        self._watch(end.peer)

    def _watch(self, end: _End) -> None:
        """Read while the peer has room; write while something is pending."""
        if end.sock.fileno() not in self.ends:
            return
        assert end.peer is not None
        reading = not (end.eof or end.peer.pending or end.peer.handshake is not None)
        mask = (IN if reading else 0) | (OUT if end.pending else 0)
        self.ep.modify(end.sock.fileno(), mask)

    def _shutdown(self, end: _End) -> None:
        if not end.shut:
            end.shut = True
            try:
                end.sock.shutdown(_socket.SHUT_WR)
            except OSError:
                pass
        assert end.peer is not None
        if end.shut and end.peer.shut:
            self._close(end)

    def _close(self, end: _End) -> None:
        for one in (end, end.peer):
            if one is not None and one.sock.fileno() in self.ends:
                fd = one.sock.fileno()
                self.ep.unregister(fd)
                del self.ends[fd]
                one.sock.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _serve(listeners: list[tuple[_socket.socket, bytes]], path: str, command_pid: int) -> None:
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):  # never hold the caller's pipes open (a hung `exec` otherwise)
        os.dup2(null, fd)
    Relay(listeners, path, command_pid).run()


def _listen(address: str, port: int) -> _socket.socket:
    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(256)
    return listener


def _raw_listeners(address: str, ports: str) -> list[tuple[_socket.socket, bytes]]:
    """One listener per raw-TCP port; a port that cannot be bound is left out (connection refused)."""
    found = []
    for item in ports.split(","):
        try:
            found.append((_listen(address, int(item)), _raw_header(int(item))))
        except (OSError, ValueError, OverflowError):
            continue
    return found


def main(argv: list[str]) -> None:
    sep = argv.index("--") if "--" in argv else -1
    if sep not in (2, 4):
        sys.stderr.write("usage: relay.py SOCKET [ADDR PORT,PORT...] -- CMD [ARG...]\n")
        os._exit(125)
    path, cmd = argv[1], argv[sep + 1:] or ["/bin/sh"]
    listeners = [(_listen("127.0.0.1", PORT), b"")]
    if sep == 4:
        listeners += _raw_listeners(argv[2], argv[3])
    command_pid = os.getpid()  # this process becomes the command (exec below)
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            try:
                _serve(listeners, path, command_pid)
            finally:
                os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)
    for listener, _ in listeners:
        listener.close()
    try:
        os.execvp(cmd[0], cmd)
    except FileNotFoundError:
        sys.stderr.write(f'sbx exec: "{cmd[0]}": executable file not found in $PATH\n')
        os._exit(127)
    except OSError as exc:
        sys.stderr.write(f'sbx exec: "{cmd[0]}": {exc.strerror}\n')
        os._exit(126)


if __name__ == "__main__":
    main(sys.argv)
