"""What every test and bench script shares: a free loopback port, and polling for a condition.

Importable as ``tests.support`` from the tests (tests/conftest.py puts the repository root on
``sys.path``) and from the bench scripts (which insert the repository root themselves).
Readiness is polled, never slept for: ``wait_for`` returns as soon as the condition holds.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["free_port", "wait_for"]

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (never the learner's 12434)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Polls at once, then every 10 ms, backing off to 100 ms, so a fast condition costs no
    waiting and a slow one little CPU. After ``timeout`` seconds: ``AssertionError`` naming
    ``what`` (write it as the thing awaited: "the model server to exit").
    """
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
        pause = min(pause * 2, 0.1)
