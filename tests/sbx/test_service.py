"""The proxy as a `labkit up|down|status` service, and started on demand by a sandbox command."""

from __future__ import annotations

import pytest
from sbx_helpers import run_in

from labkit.sbx import service

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("lab_home")]


def test_start_is_idempotent_and_status_says_where() -> None:
    assert "already running" in service.start()
    running, line = service.status()
    port = service.tcp_port()
    assert running and f"tcp 127.0.0.1:{port}" in line and "control.sock" in line and "pid " in line


def test_exec_starts_a_stopped_proxy_on_demand(sandbox: str) -> None:
    assert service.stop() == "policy proxy: stopped"
    assert service.stop() == "policy proxy: not running"
    running, line = service.status()
    assert not running and "labkit up" in line
    done = run_in(sandbox, "curl -sS -m 5 http://blocked.example/")
    assert done.stdout.startswith("Blocked by network policy: domain blocked.example:80")
    assert service.status()[0]
