"""Shared by the widget tests (a module of its own: every test folder has a `conftest`)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

MODEL = "ai/smollm2:135M-Q4_1"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(probe: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy (the proxy writes a record when a request ends)."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
    return value
