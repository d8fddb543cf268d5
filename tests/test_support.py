"""The tests' own helpers (tests/support): a free port, and polling that names what it waited for."""

from __future__ import annotations

import socket
import time

import pytest

from tests.support import free_port, wait_for

pytestmark = pytest.mark.fast


def test_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 1024 <= port <= 65535


def test_wait_for_returns_the_first_truthy_value_without_waiting_for_it_twice() -> None:
    calls = iter([None, 0, "", "ready", "later"])
    assert wait_for(lambda: next(calls), 5, "the third poll") == "ready"
    assert next(calls) == "later"


def test_wait_for_fails_at_its_timeout_naming_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError) as err:
        wait_for(lambda: False, 0.2, "the model server to exit")
    assert str(err.value) == "timed out after 0.2 s waiting for the model server to exit"
    assert 0.2 <= time.monotonic() - started < 1.0
