"""In-sandbox relay: the guest's 127.0.0.1:3128 → the policy proxy's Unix socket, then the command.

Runs inside a namespaced sandbox as ``python3 -I -S relay.py SOCKET -- CMD [ARG…]``, with no
labkit import (only the interpreter is bound in). It listens *before* it execs the command,
so the command's first request cannot race the relay (no readiness polling), and it
double-forks the relay off: the command stays the sandbox's main process, and the relay
exits when the command does (sandbox-emulation §4 #4), so nothing keeps the namespace alive.

One thread, one epoll loop, C modules only (fast to start, no thread per connection); the
guest side gets TCP_NODELAY, avoiding the Nagle stall measured with socat (§4 #5). Killing
the relay only cuts the guest off.
"""

from __future__ import annotations

import _signal
import _socket
import os
import select
import sys

PORT = 3128
CHUNK = 65536
IN, OUT = select.EPOLLIN, select.EPOLLOUT


class _End:
    """One socket of a relayed pair: what it still has to send, and whether it is done."""

    __slots__ = ("sock", "peer", "pending", "eof", "shut")

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.peer: _End | None = None
        self.pending = bytearray()  # bytes read from the peer that this socket could not take yet
        self.eof = False  # this socket sent EOF (nothing more to read from it)
        self.shut = False  # we shut down writing on this socket


class Relay:
    def __init__(self, listener: _socket.socket, path: str, command_pid: int) -> None:
        self.listener, self.path = listener, path
        self.ep = select.epoll()
        self.ends: dict[int, _End] = {}
        listener.setblocking(False)
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
                if fd == self.listener.fileno():
                    self._accept()
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

    def _accept(self) -> None:
        while True:
            try:
                fd, _ = self.listener._accept()
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
        if not data:
            end.eof = True
            self._watch(end)
            if not peer.pending:
                self._shutdown(peer)
            return
        peer.pending += data
        self._flush(peer)

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
        mask = (0 if end.eof or end.peer.pending else IN) | (OUT if end.pending else 0)
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


def _serve(listener: _socket.socket, path: str, command_pid: int) -> None:
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):  # never hold the caller's pipes open (a hung `exec` otherwise)
        os.dup2(null, fd)
    Relay(listener, path, command_pid).run()


def main(argv: list[str]) -> None:
    if "--" not in argv or argv.index("--") != 2:
        sys.stderr.write("usage: relay.py SOCKET -- CMD [ARG...]\n")
        os._exit(125)
    path, cmd = argv[1], argv[3:] or ["/bin/sh"]
    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(256)
    command_pid = os.getpid()  # this process becomes the command (exec below)
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            try:
                _serve(listener, path, command_pid)
            finally:
                os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)
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
