"""Unix sockets at any path length.

``sun_path`` holds 108 bytes, and a state folder under a deep temporary directory plus a
sandbox name can exceed it. Binding or connecting through ``/proc/self/fd/<dirfd>/<name>``
resolves the directory by descriptor, so only the short form reaches the kernel.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

_MAX = 100


def _via_dir(path: Path, action: str, sock: socket.socket) -> None:
    if len(os.fsencode(path)) < _MAX:
        getattr(sock, action)(str(path))
        return
    dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        getattr(sock, action)(f"/proc/self/fd/{dirfd}/{path.name}")
    finally:
        os.close(dirfd)


def bind(path: Path) -> socket.socket:
    """A listening-ready Unix stream socket at ``path`` (a stale file there is replaced)."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _via_dir(path, "bind", sock)
    except OSError:
        sock.close()
        raise
    return sock


def connect(path: Path, timeout: float | None = 2.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        _via_dir(path, "connect", sock)
    except OSError:
        sock.close()
        raise
    return sock


def answers(path: Path) -> bool:
    """Does something accept connections on this socket?"""
    try:
        connect(path, 0.5).close()
        return True
    except OSError:
        return False
