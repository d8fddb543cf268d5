"""In-sandbox relay: the guest's 127.0.0.1:3128 → the policy proxy's Unix socket, then the command.

Runs inside a namespaced sandbox as ``python3 -I -S relay.py SOCKET -- CMD [ARG…]``, with no
labkit import (only the interpreter is bound in). It listens *before* it execs the command,
so the command's first request cannot race the relay (no readiness polling), and it
double-forks the relay off: the command stays the sandbox's main process, and the relay
exits when the command does (sandbox-emulation §4 #4), so nothing keeps the namespace alive.
Only C modules (``_socket``, ``_thread``) are used, to keep the launch fast; TCP_NODELAY avoids
the Nagle stall measured with socat (§4 #5). Killing the relay only cuts the guest off.
"""

from __future__ import annotations

import _signal
import _socket
import _thread
import os
import sys

PORT = 3128
CHUNK = 65536


def _pump(src: _socket.socket, dst: _socket.socket) -> None:
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(_socket.SHUT_WR)
    except OSError:
        pass


def _connection(fd: int, path: str) -> None:
    conn = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM, 0, fd)
    upstream = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        upstream.connect(path)
    except OSError:
        conn.close()
        upstream.close()
        return
    other_done = _thread.allocate_lock()
    other_done.acquire()

    def upward() -> None:
        try:
            _pump(conn, upstream)
        finally:
            other_done.release()

    _thread.start_new_thread(upward, ())
    _pump(upstream, conn)
    other_done.acquire()
    conn.close()
    upstream.close()


def _exit_with(pid: int) -> None:
    """End the relay when the command ends.

    bubblewrap's pid 1 waits for *all* its children, so a relay that lived on would keep a
    detached sandbox (no --die-with-parent) alive after its command; a pidfd says when it exits.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):  # already gone, or no pidfd (kernel < 5.3): poll instead
        while True:
            try:
                os.kill(pid, 0)
            except OSError:
                os._exit(0)
            _thread.allocate_lock().acquire(timeout=0.5)
    import select

    select.select([pidfd], [], [])
    os._exit(0)


def _serve(listener: _socket.socket, path: str, command_pid: int) -> None:
    _thread.start_new_thread(_exit_with, (command_pid,))
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):  # never hold the caller's pipes open (a hung `exec` otherwise)
        os.dup2(null, fd)
    while True:
        try:
            fd, _ = listener._accept()
        except OSError:
            continue
        _thread.start_new_thread(_connection, (fd, path))


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
            _serve(listener, path, command_pid)
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
